"""Blob routes: HEAD, GET (307 to S3, or streamed in proxy mode), DELETE."""

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from . import Routes, blocking, registry_of

routes = Routes()
PATH = "/v2/{name:path}/blobs/{digest}"


# async (as the other hot read routes): see routes.blocking.
@routes.head(PATH)
async def head_blob(request: Request, name: str, digest: str) -> Response:
    blob = await blocking(request, registry_of(request).blobs.stat, name, digest)
    return Response(headers={
        "Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest,
        "Content-Type": "application/octet-stream",
    })


@routes.get(PATH)
async def get_blob(request: Request, name: str, digest: str) -> Response:
    registry = registry_of(request)
    if registry.settings.blob_delivery == "proxy":
        blob, chunks = await blocking(request, registry.blobs.stream, name, digest)
        return StreamingResponse(chunks, media_type="application/octet-stream", headers={
            "Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest})
    download = await blocking(request, registry.blobs.download, name, digest)
    # Image bytes never pass through the function: 307 keeps the method.
    return Response(status_code=307, headers={
        "Location": download.url, "Docker-Content-Digest": download.blob.digest})


@routes.delete(PATH)
def delete_blob(request: Request, name: str, digest: str) -> Response:
    registry_of(request).blobs.delete(name, digest)
    return Response(status_code=202)
