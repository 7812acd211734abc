"""Blob routes: HEAD, GET (307 to S3, or streamed in proxy mode), DELETE."""

from collections.abc import AsyncIterator, Iterator

from fastapi import Request
from skyport.concurrency import run_blocking
from starlette.responses import Response, StreamingResponse

from . import Routes, inline, registry_of

routes = Routes()
PATH = "/v2/{name:path}/blobs/{digest}"


@routes.head(PATH)
async def head_blob(request: Request, name: str, digest: str) -> Response:
    blobs = registry_of(request).blobs
    # A link this process holds is answered on the loop: no storage call, no thread hop.
    blob = blobs.cached(name, digest) or await run_blocking(blobs.stat, name, digest, inline=inline(request))
    return Response(
        headers={
            "Content-Length": str(blob.size),
            "Docker-Content-Digest": blob.digest,
            "Content-Type": "application/octet-stream",
        }
    )


@routes.get(PATH)
async def get_blob(request: Request, name: str, digest: str) -> Response:
    registry = registry_of(request)
    if registry.settings.blob_delivery == "proxy":
        one_at_a_time = inline(request)
        blob, chunks = await run_blocking(registry.blobs.stream, name, digest, inline=one_at_a_time)
        return StreamingResponse(
            _each(chunks, one_at_a_time),
            media_type="application/octet-stream",
            headers={"Content-Length": str(blob.size), "Docker-Content-Digest": blob.digest},
        )
    blobs = registry.blobs
    if (cached := blobs.cached(name, digest)) is not None:
        # Warm: from memory, signed on the loop (local CPU, ~8 us: less than a thread hop).
        # Two rare exceptions block briefly: the process's first signature builds the S3
        # client, and temporary credentials about to expire are refreshed by botocore.
        download = blobs.presigned(cached)
    else:
        download = await run_blocking(blobs.download, name, digest, inline=inline(request))
    # Image bytes never pass through the function: 307 keeps the method.
    return Response(
        status_code=307, headers={"Location": download.url, "Docker-Content-Digest": download.blob.digest}
    )


async def _each(chunks: Iterator[bytes], inline: bool) -> AsyncIterator[bytes]:
    # Each read from S3 blocks, as any storage call (not Starlette's own threadpool).
    while (chunk := await run_blocking(next, chunks, None, inline=inline)) is not None:
        yield chunk


@routes.delete(PATH)
async def delete_blob(request: Request, name: str, digest: str) -> Response:
    await run_blocking(registry_of(request).blobs.delete, name, digest, inline=inline(request))
    return Response(status_code=202)
