"""Blob routes: HEAD, GET (307 to S3, or streamed in proxy mode), DELETE."""

from collections.abc import AsyncIterator, Iterator

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.errors import BlobUnknown
from starlette.responses import Response, StreamingResponse

from . import Routes, access_of, inline, registry_of

routes = Routes()
PATH = "/v2/{name:path}/blobs/{digest}"


@routes.head(PATH)
async def head_blob(request: Request, name: str, digest: str) -> Response:
    known, size = await run_blocking(
        registry_of(request).pull_through.blob_stat, name, digest, access_of(request), inline=inline(request)
    )
    headers = {"Docker-Content-Digest": known, "Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return Response(headers=headers)


@routes.get(PATH)
async def get_blob(request: Request, name: str, digest: str) -> Response:
    registry = registry_of(request)
    if registry.settings.blob_delivery == "proxy":
        one_at_a_time = inline(request)
        try:
            blob, chunks = await run_blocking(registry.blobs.stream, name, digest, inline=one_at_a_time)
            return StreamingResponse(
                _each(chunks, one_at_a_time),
                media_type="application/octet-stream",
                headers={"Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest},
            )
        except BlobUnknown:
            # Not here: a pull-through cache miss is still a redirect; anything else, 404.
            download = await run_blocking(
                registry.pull_through.blob, name, digest, access_of(request), True, inline=one_at_a_time
            )
            return Response(
                status_code=307, headers={"Location": download.url, "Docker-Content-Digest": download.digest}
            )
    # Through the pull-through cache for names a rule covers (skyport/pull_through/blobs.py:
    # a miss redirects to the upstream's storage while a fill copies it); else as any blob.
    download = await run_blocking(
        registry.pull_through.blob, name, digest, access_of(request), inline=inline(request)
    )
    # Image bytes never pass through the function: 307 keeps the method.
    return Response(
        status_code=307, headers={"Location": download.url, "Docker-Content-Digest": download.digest}
    )


async def _each(chunks: Iterator[bytes], inline: bool) -> AsyncIterator[bytes]:
    # Each read from S3 blocks, as any storage call (not Starlette's own threadpool).
    while (chunk := await run_blocking(next, chunks, None, inline=inline)) is not None:
        yield chunk


@routes.delete(PATH)
async def delete_blob(request: Request, name: str, digest: str) -> Response:
    await run_blocking(
        registry_of(request).pull_through.refuse_client_write, name, "delete", inline=inline(request)
    )
    await run_blocking(registry_of(request).blobs.delete, name, digest, inline=inline(request))
    return Response(status_code=202)
