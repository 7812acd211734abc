"""Blob routes: HEAD, GET (307 to S3, or streamed in proxy mode), DELETE."""

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from . import registry_of

router = APIRouter()
PATH = "/v2/{name:path}/blobs/{digest}"


@router.head(PATH)
def head_blob(request: Request, name: str, digest: str) -> Response:
    blob = registry_of(request).blobs.stat(name, digest)
    return Response(headers={
        "Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest,
        "Content-Type": "application/octet-stream",
    })


@router.get(PATH)
def get_blob(request: Request, name: str, digest: str) -> Response:
    registry = registry_of(request)
    if registry.settings.blob_delivery == "proxy":
        blob, chunks = registry.blobs.stream(name, digest)
        return StreamingResponse(chunks, media_type="application/octet-stream", headers={
            "Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest})
    download = registry.blobs.download(name, digest)
    # Image bytes never pass through the function: 307 keeps the method.
    return Response(status_code=307, headers={
        "Location": download.url, "Docker-Content-Digest": download.blob.digest})


@router.delete(PATH)
def delete_blob(request: Request, name: str, digest: str) -> Response:
    registry_of(request).blobs.delete(name, digest)
    return Response(status_code=202)
