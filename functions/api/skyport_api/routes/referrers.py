"""`GET /v2/<name>/referrers/<digest>` (distribution-spec 1.1 "Listing Referrers")."""

import json

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.media_types import OCI_INDEX
from starlette.responses import Response

from . import Routes, inline, registry_of

routes = Routes()


@routes.get("/v2/{name:path}/referrers/{digest}")
async def list_referrers(request: Request, name: str, digest: str) -> Response:
    artifact_type = request.query_params.get("artifactType")
    referrers = await run_blocking(
        registry_of(request).referrers.list, name, digest, artifact_type, inline=inline(request)
    )
    response = Response(content=json.dumps(referrers.index).encode(), media_type=OCI_INDEX)
    if referrers.filtered:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response
