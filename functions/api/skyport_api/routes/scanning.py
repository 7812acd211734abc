"""The scan extension (issue 14; skyport/scan_results.py): what the scans of an image found,
for a UI, in the distribution-spec's extension style (extensions/README.md: repository-level
extensions under ``/v2/<name>/_<extension>/...``; no name component starts with ``_``).

    GET /v2/<name>/_skyport/scan/<reference>   200 application/json: for an image
                                               {repository, digest, mediaType, status,
                                               scannedAt, counts, report, sbomDigest,
                                               reportDigest}; for an index the same per
                                               platform image under "manifests"
    GET /v2/<name>/_skyport/sbom/<reference>   200 application/vnd.cyclonedx+json: the
                                               SBOM; an index needs ?platform=os/arch[/variant]
                                               unless it holds one platform image

Both need pull on <name>. Errors are the registry's envelope: NAME_INVALID, DIGEST_INVALID,
NAME_UNKNOWN, MANIFEST_UNKNOWN, and SCAN_UNKNOWN (404) for an image not scanned yet.
"""

import json

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.scanning.model import SBOM_ARTIFACT_TYPE
from starlette.responses import Response

from . import Routes, inline, registry_of

routes = Routes()
SCAN = "/v2/{name:path}/_skyport/scan/{reference}"
SBOM = "/v2/{name:path}/_skyport/sbom/{reference}"


@routes.get(SCAN)
async def scan_results(request: Request, name: str, reference: str) -> Response:
    view = await run_blocking(registry_of(request).scan_results.view, name, reference, inline=inline(request))
    return Response(content=json.dumps(view.fields()).encode(), media_type="application/json")


@routes.get(SBOM)
async def sbom(request: Request, name: str, reference: str) -> Response:
    platform = request.query_params.get("platform") or None
    digest, data = await run_blocking(
        registry_of(request).scan_results.sbom, name, reference, platform, inline=inline(request)
    )
    # Which platform image the SBOM describes (for an index, the one ?platform= chose).
    # Not Docker-Content-Digest: that names the body's own digest.
    return Response(content=data, media_type=SBOM_ARTIFACT_TYPE, headers={"Skyport-Image-Digest": digest})
