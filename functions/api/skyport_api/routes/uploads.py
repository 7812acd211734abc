"""Upload routes: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE.

The HTTP side of uploads lives here: the ``Location`` and ``Range`` an upload is
answered with, and ``Content-Range`` parsing."""

import re

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.errors import DigestInvalid, RangeInvalid, UploadPosition
from skyport.storage.ports import BlobRecord, UploadSession
from starlette.responses import Response

from . import Routes, access_of, inline, owner_of, registry_of

routes = Routes()
UPLOADS = "/v2/{name:path}/blobs/uploads/"
UPLOAD = "/v2/{name:path}/blobs/uploads/{upload_id}"
# ASCII digits only: str.isdigit accepts other Unicode digits ("²"), which int() refuses.
# At most 15 digits: beyond any blob S3 can hold (5 TiB has 13), and far below the
# 4,300 digits past which int() refuses to convert.
_CONTENT_RANGE = re.compile(r"([0-9]{1,15})-([0-9]{1,15})")


def upload_location(repository: str, upload_id: str) -> str:
    return f"/v2/{repository}/blobs/uploads/{upload_id}"


def range_header(offset: int) -> str:
    # Inclusive end of what was received (distribution-spec); Distribution
    # answers "0-0" for an empty upload, and clients expect that.
    return f"0-{max(offset - 1, 0)}"


def parse_content_range(value: str | None) -> tuple[int, int] | None:
    """``Content-Range: <start>-<end>`` (inclusive; distribution-spec chunked upload).
    Also accepts the RFC 9110 forms ``bytes <start>-<end>/<total>`` and ``bytes=``."""
    if value is None:
        return None
    text = value.strip()
    for prefix in ("bytes=", "bytes "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    match = _CONTENT_RANGE.fullmatch(text.split("/", 1)[0])
    if not match or int(match[2]) < int(match[1]):
        raise RangeInvalid({"content_range": value[:100]}, message="malformed Content-Range")
    return int(match[1]), int(match[2])


def _in_progress(name: str, session: UploadSession, status: int) -> Response:
    return Response(
        status_code=status,
        headers={
            "Location": upload_location(name, session.upload_id),
            "Range": range_header(session.offset),
            "Docker-Upload-UUID": session.upload_id,
        },
    )


def _created(name: str, blob: BlobRecord) -> Response:
    return Response(
        status_code=201,
        headers={"Location": f"/v2/{name}/blobs/{blob.digest}", "Docker-Content-Digest": blob.digest},
    )


@routes.post(UPLOADS)
@routes.post(UPLOADS.rstrip("/"))
async def start_upload(request: Request, name: str) -> Response:
    registry = registry_of(request)
    query = request.query_params
    if "mount" in query:
        # Only from a repository the caller may pull (auth on).
        blob = await run_blocking(
            registry.blobs.mount,
            name,
            query["mount"],
            query.get("from"),
            access_of(request),
            inline=inline(request),
        )
        if blob is not None:
            return _created(name, blob)
    elif "digest" in query:
        blob = await registry.uploads.upload_whole(name, query["digest"], request.stream())
        return _created(name, blob)
    session = await run_blocking(registry.uploads.start, name, owner_of(request), inline=inline(request))
    response = _in_progress(name, session, 202)
    # Chunks of any size are accepted (small ones are coalesced into S3 parts);
    # this asks for ones that cost few requests yet fit in one (behind Lambda).
    settings = registry.settings
    response.headers["OCI-Chunk-Min-Length"] = str(settings.chunk_min_length)
    if settings.max_request_body:
        # A held distribution-spec proposal; some clients read it.
        response.headers["OCI-Chunk-Max-Length"] = str(settings.max_request_body)
    return response


async def _content_range(request: Request, name: str, upload_id: str) -> tuple[int, int] | None:
    try:
        return parse_content_range(request.headers.get("content-range"))
    except RangeInvalid as error:
        # distribution-spec: an invalid Content-Range is a 416, and a 416 carries
        # Range and Location so the client can resume (unknown uploads stay 404).
        session = await run_blocking(
            registry_of(request).uploads.status, name, upload_id, owner_of(request), inline=inline(request)
        )
        error.upload = UploadPosition(name, session.upload_id, session.offset)
        raise


@routes.patch(UPLOAD)
async def append_chunk(request: Request, name: str, upload_id: str) -> Response:
    content_range = await _content_range(request, name, upload_id)
    session = await registry_of(request).uploads.append(
        name, upload_id, request.stream(), content_range, owner=owner_of(request)
    )
    return _in_progress(name, session, 202)


@routes.put(UPLOAD)
async def finish_upload(request: Request, name: str, upload_id: str) -> Response:
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid(message="the digest query parameter is required")
    content_range = await _content_range(request, name, upload_id)
    blob = await registry_of(request).uploads.finish(
        name, upload_id, digest, request.stream(), content_range, owner=owner_of(request)
    )
    return _created(name, blob)


@routes.get(UPLOAD)
async def upload_status(request: Request, name: str, upload_id: str) -> Response:
    session = await run_blocking(
        registry_of(request).uploads.status, name, upload_id, owner_of(request), inline=inline(request)
    )
    return _in_progress(name, session, 204)


@routes.delete(UPLOAD)
async def cancel_upload(request: Request, name: str, upload_id: str) -> Response:
    await run_blocking(
        registry_of(request).uploads.cancel, name, upload_id, owner_of(request), inline=inline(request)
    )
    return Response(status_code=204)
