"""Upload routes: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE.

The HTTP side of uploads lives here: the ``Location`` and ``Range`` an upload is
answered with, and ``Content-Range`` parsing.

The same routes serve the upload service (``upload_service.py``), where requests are
authorized by the upload's capability rather than a token: every ``Location`` answered
there keeps that capability (``session_location``), and the 201 names the blob on the
registry's host (SKYPORT_REGISTRY_URL)."""

import re
from urllib.parse import urlencode

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


def session_location(request: Request, repository: str, upload_id: str) -> str:
    """The Location of an upload in progress as this request is answered: the path,
    plus, on the upload service, the capability the request was authorized by (set on
    ``request.state`` by its authorizer): without it the next request would be refused."""
    location = upload_location(repository, upload_id)
    capability = getattr(request.state, "capability", None)
    if capability:
        from skyport.auth.capabilities import QUERY_PARAMETER  # only where there are capabilities

        location += "?" + urlencode({QUERY_PARAMETER: capability})
    return location


def started_location(request: Request, repository: str, session: UploadSession) -> str:
    """The Location a POST answers. With an upload endpoint (SKYPORT_UPLOAD_ENDPOINT) it
    names the upload service, with a capability for this one upload: clients do not
    send the registry's Authorization to another host (distribution-spec: the Location
    may be on another host; clients keep its query and add ``digest=``)."""
    registry = registry_of(request)
    endpoint = registry.settings.upload_endpoint
    if not endpoint:
        return upload_location(repository, session.upload_id)
    # Imported here: a function without an upload endpoint never loads it (cold start).
    from skyport.auth.capabilities import QUERY_PARAMETER

    capability = registry.capabilities.mint(repository, session.upload_id, session.owner, session.expires_at)
    query = urlencode({QUERY_PARAMETER: capability})
    return f"{endpoint}{upload_location(repository, session.upload_id)}?{query}"


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


def _in_progress(location: str, session: UploadSession, status: int) -> Response:
    return Response(
        status_code=status,
        headers={
            "Location": location,
            "Range": range_header(session.offset),
            "Docker-Upload-UUID": session.upload_id,
        },
    )


def _created(request: Request, name: str, blob: BlobRecord) -> Response:
    # On the upload service, the blob lives on the registry's host (SKYPORT_REGISTRY_URL).
    registry_url = registry_of(request).settings.registry_url or ""
    return Response(
        status_code=201,
        headers={
            "Location": f"{registry_url}/v2/{name}/blobs/{blob.digest}",
            "Docker-Content-Digest": blob.digest,
        },
    )


@routes.post(UPLOADS)
@routes.post(UPLOADS.rstrip("/"))
async def start_upload(request: Request, name: str) -> Response:
    registry = registry_of(request)
    # Nothing is pushed into a pull-through cache prefix (skyport/pull_through/cache.py).
    await run_blocking(registry.pull_through.refuse_client_write, name, "push", inline=inline(request))
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
            return _created(request, name, blob)
    elif "digest" in query:
        blob = await registry.uploads.upload_whole(name, query["digest"], request.stream())
        return _created(request, name, blob)
    session = await run_blocking(registry.uploads.start, name, owner_of(request), inline=inline(request))
    response = _in_progress(started_location(request, name, session), session, 202)
    # Chunks of any size are accepted (small ones are coalesced into S3 parts);
    # this asks for ones that cost few requests yet fit in one (behind Lambda).
    settings = registry.settings
    response.headers["OCI-Chunk-Min-Length"] = str(settings.chunk_min_length)
    if settings.max_request_body and not settings.upload_endpoint:
        # A held distribution-spec proposal; some clients read it. Not when the upload
        # service takes the bytes: it has no body limit.
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
    return _in_progress(session_location(request, name, upload_id), session, 202)


@routes.put(UPLOAD)
async def finish_upload(request: Request, name: str, upload_id: str) -> Response:
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid(message="the digest query parameter is required")
    content_range = await _content_range(request, name, upload_id)
    blob = await registry_of(request).uploads.finish(
        name, upload_id, digest, request.stream(), content_range, owner=owner_of(request)
    )
    return _created(request, name, blob)


@routes.get(UPLOAD)
async def upload_status(request: Request, name: str, upload_id: str) -> Response:
    session = await run_blocking(
        registry_of(request).uploads.status, name, upload_id, owner_of(request), inline=inline(request)
    )
    return _in_progress(session_location(request, name, upload_id), session, 204)


@routes.delete(UPLOAD)
async def cancel_upload(request: Request, name: str, upload_id: str) -> Response:
    await run_blocking(
        registry_of(request).uploads.cancel, name, upload_id, owner_of(request), inline=inline(request)
    )
    return Response(status_code=204)
