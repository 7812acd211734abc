"""The direct-upload extension (``skyport push``): small JSON in and out; the bytes go
from the client to S3 by presigned part URLs (skyport.direct_uploads).

    POST   /v2/<name>/_skyport/uploads                      {"digest", "size"}
           201 {"state": "exists", "digest", "size"}          the registry has it (linked)
           202 {"state": "uploading", "upload_id", "part_size", "part_count", ...}
    POST   /v2/<name>/_skyport/uploads/<id>/parts           {"parts": [1, 2, ...]}
           200 {"urls": {"1": url, ...}, "expires_in"}
    GET    /v2/<name>/_skyport/uploads/<id>                 200 state, and the parts S3 holds
    POST   /v2/<name>/_skyport/uploads/<id>/complete        202 {"state": "verifying", ...}
    DELETE /v2/<name>/_skyport/uploads/<id>                 204

The distribution-spec reserves ``_<extension>`` path components for extensions; no
repository name component can start with ``_``, so these never shadow a repository.
"""

import json
from typing import Any

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.direct_uploads import DirectUpload
from skyport.errors import BlobUploadInvalid, PayloadTooLarge
from skyport.storage.ports import BlobRecord
from starlette.responses import Response

from . import Routes, access_of, inline, owner_of, registry_of

routes = Routes()
UPLOADS = "/v2/{name:path}/_skyport/uploads"
UPLOAD = "/v2/{name:path}/_skyport/uploads/{upload_id}"
PARTS = "/v2/{name:path}/_skyport/uploads/{upload_id}/parts"
COMPLETE = "/v2/{name:path}/_skyport/uploads/{upload_id}/complete"
MAX_BODY = 64 * 1024  # 1,000 part numbers are ~6 KB


async def _json_body(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge({"limit": MAX_BODY})
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BlobUploadInvalid(message="the body must be a JSON object") from error
    if not isinstance(document, dict):
        raise BlobUploadInvalid(message="the body must be a JSON object")
    return document


def _json(status: int, document: dict[str, Any]) -> Response:
    return Response(status_code=status, content=json.dumps(document).encode(), media_type="application/json")


def _upload(name: str, upload: DirectUpload, status: int) -> Response:
    document: dict[str, Any] = {
        "state": upload.state,
        "upload_id": upload.upload_id,
        "digest": upload.digest,
        "size": upload.size,
        "part_size": upload.part_size,
        "part_count": upload.part_count,
        "location": f"/v2/{name}/_skyport/uploads/{upload.upload_id}",
    }
    if upload.parts:
        document["parts"] = [{"number": p.number, "size": p.size} for p in upload.parts]
    return _json(status, document)


@routes.post(UPLOADS)
async def start_direct_upload(request: Request, name: str) -> Response:
    body = await _json_body(request)
    result = await run_blocking(
        registry_of(request).direct_uploads.start,
        name,
        str(body.get("digest", ""))[:300],
        body.get("size"),
        owner_of(request),
        access_of(request),
        inline=inline(request),
    )
    if isinstance(result, BlobRecord):
        return _json(201, {"state": "exists", "digest": result.digest, "size": result.size})
    return _upload(name, result, 202)


@routes.post(PARTS)
async def direct_part_urls(request: Request, name: str, upload_id: str) -> Response:
    body = await _json_body(request)
    numbers = body.get("parts")
    if not isinstance(numbers, list):
        raise BlobUploadInvalid(message='"parts" must be a list of part numbers')
    registry = registry_of(request)
    urls = await run_blocking(
        registry.direct_uploads.part_urls, name, upload_id, numbers, owner_of(request), inline=inline(request)
    )
    expires_in = registry.settings.direct_url_seconds
    return _json(200, {"urls": {str(n): url for n, url in urls.items()}, "expires_in": expires_in})


@routes.get(UPLOAD)
async def direct_upload_status(request: Request, name: str, upload_id: str) -> Response:
    upload = await run_blocking(
        registry_of(request).direct_uploads.status, name, upload_id, owner_of(request), inline=inline(request)
    )
    return _upload(name, upload, 200)


@routes.post(COMPLETE)
async def complete_direct_upload(request: Request, name: str, upload_id: str) -> Response:
    upload = await run_blocking(
        registry_of(request).direct_uploads.complete,
        name,
        upload_id,
        owner_of(request),
        inline=inline(request),
    )
    return _upload(name, upload, 202)


@routes.delete(UPLOAD)
async def abort_direct_upload(request: Request, name: str, upload_id: str) -> Response:
    await run_blocking(
        registry_of(request).direct_uploads.abort, name, upload_id, owner_of(request), inline=inline(request)
    )
    return Response(status_code=204)
