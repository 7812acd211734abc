"""Manifest routes: GET, HEAD, PUT, DELETE by tag or digest."""

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.errors import PayloadTooLarge
from skyport.numerals import decimal
from skyport.registry import Registry
from starlette.background import BackgroundTask
from starlette.responses import Response

from . import Routes, access_of, inline, registry_of

routes = Routes()
PATH = "/v2/{name:path}/manifests/{reference}"


def _served_manifest(registry: Registry, name: str, reference: str, accept, include_body: bool, access):
    # Names under a pull-through cache prefix (and, with a mirror rule, unknown unprefixed
    # ones) come through the cache; every other name from the manifest service as before.
    answer = registry.pull_through.manifest(name, reference, accept, include_body, access)
    # Scan policies (skyport/scan_policy.py): an image whose report has findings at or
    # above a covering policy's severity is refused, GET and HEAD alike; with no policy
    # covering the repository this reads nothing. In the same blocking call: no second hop.
    registry.scan_policies.check(name, answer.record)
    return answer


async def _manifest_response(request: Request, name: str, reference: str, include_body: bool) -> Response:
    accept = request.headers.getlist("accept")
    answer = await run_blocking(
        _served_manifest,
        registry_of(request),
        name,
        reference,
        accept,
        include_body,
        access_of(request),
        inline=inline(request),
    )
    record, body = answer.record, answer.body
    headers = {
        "Docker-Content-Digest": record.digest,
        "Content-Type": record.media_type,
        "Content-Length": str(record.size),
        "ETag": f'"{record.digest}"',
    }
    if answer.warning:
        headers["Warning"] = answer.warning  # served stale: upstream failed (RFC 7234 5.5.1)
    background = None
    if include_body:
        # A GET is a pull (HEAD is not: skyport/pulls.py says why). Noting it is memory
        # only; the rare write it hands back runs after the response and never fails it.
        record_pull = registry_of(request).pulls.note(name, record.digest)
        if record_pull is not None:
            background = BackgroundTask(run_blocking, record_pull, inline=inline(request))
    return Response(content=body or b"", headers=headers, background=background)


@routes.get(PATH)
async def get_manifest(request: Request, name: str, reference: str) -> Response:
    return await _manifest_response(request, name, reference, include_body=True)


@routes.head(PATH)
async def head_manifest(request: Request, name: str, reference: str) -> Response:
    return await _manifest_response(request, name, reference, include_body=False)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (never buffered beyond)."""
    declared = request.headers.get("content-length")
    if declared and (decimal(declared, limit + 1) or 0) > limit:
        raise PayloadTooLarge({"limit": limit}, message="manifest exceeds the size limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge({"limit": limit}, message="manifest exceeds the size limit")
    return bytes(body)


@routes.put(PATH)
async def put_manifest(request: Request, name: str, reference: str) -> Response:
    registry = registry_of(request)
    body = await _read_limited(request, registry.settings.max_manifest_size)
    pushed = await run_blocking(
        registry.manifests.push,
        name,
        reference,
        request.headers.get("content-type"),
        body,
        inline=inline(request),
    )
    headers = {"Location": f"/v2/{name}/manifests/{pushed.digest}", "Docker-Content-Digest": pushed.digest}
    if pushed.subject:
        # distribution-spec 1.1: tells the client the registry handles referrers itself.
        headers["OCI-Subject"] = pushed.subject
    return Response(status_code=201, headers=headers)


@routes.delete(PATH)
async def delete_manifest(request: Request, name: str, reference: str) -> Response:
    await run_blocking(
        registry_of(request).pull_through.refuse_client_write, name, "delete", inline=inline(request)
    )
    await run_blocking(registry_of(request).manifests.delete, name, reference, inline=inline(request))
    return Response(status_code=202)
