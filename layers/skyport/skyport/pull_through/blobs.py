"""Blobs through the cache (issue 13): a client never waits on a copy.

A blob the repository holds (linked: a fill finished, verified) is a 307 to S3, as any
blob. On a miss, upstream is asked ``GET /v2/<upstream name>/blobs/<digest>`` with the
rule's credentials, redirects not followed, and only its status and headers are read:

(a) **3xx with a Location** (Docker Hub, ghcr, quay, ECR, Distribution on S3): 307 to that
    Location, a short-lived URL of the upstream's storage that needs no credentials. One
    on the upstream's own host is handed out only by a rule without credentials (it is
    then what the client would have fetched without us); else it is case (c).
(b) **200 from a rule without credentials** (an anonymous upstream serving bytes itself,
    e.g. Distribution on its filesystem driver): 307 to the upstream's blob URL, which the
    client fetches anonymously, exactly as it would have without us.
(c) **200 from a rule with credentials**, or from an upstream that asked for a token even
    without them (Harbor and other token-auth registries serving bytes themselves: the
    client, sent there, would get a 401 for a registry it never logged in to):
    redirecting would need our credentials or token, which are never handed out. The
    request waits for the fill up to settings.cache_fill_wait_seconds (small blobs are in
    S3 by then) and redirects to S3;
    else 503 UNAVAILABLE with Retry-After: the client retries, and the fill goes on.
404: BLOB_UNKNOWN. In every case but 404 a fill starts (fill.py), so the next pull is
served from S3. A blob is only ever asked of the rule's upstream *repository* the name
maps to (the upstream enforces its own scoping), never of another repository.

HEAD on a miss asks upstream's HEAD (size and digest) and starts nothing: clients HEAD to
learn whether to push, and a pull GETs. An upstream whose HEAD is a redirect (Distribution
on S3 redirects HEAD too), or says no size, is asked for the blob's first byte (a ranged
GET, its redirects followed as a fill follows them): the size is in its Content-Range. A
size still unknown is 503 UNAVAILABLE, never a HEAD claiming 0 bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from ..blobs import BlobService
from ..config import Settings
from ..errors import BlobUnknown, Unavailable
from .fill import BlobFill
from .rules import CacheTarget
from .upstream import (
    REDIRECTS,
    UpstreamDenied,
    UpstreamDown,
    Upstreams,
    as_registry_error,
    check_status,
    checked_redirect,
    finish,
)

WAIT_STEP_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class BlobAnswer:
    """Where the client gets the bytes (``url``), and what is known of the blob."""

    digest: str
    url: str
    size: int | None = None
    cached: bool = False  # from S3 (True), or from upstream's storage (False)


class CachedBlobs:
    def __init__(
        self,
        blobs: BlobService,
        fill: BlobFill,
        upstreams: Upstreams,
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._fill = fill
        self._upstreams = upstreams
        self._settings = settings
        self._sleep = sleep
        self._clock = clock

    def download(self, target: CacheTarget, digest: str) -> BlobAnswer:
        try:
            found = self._blobs.download(target.repository, digest)
            return BlobAnswer(digest, found.url, found.blob.size, cached=True)
        except BlobUnknown:
            pass
        try:
            response = self._upstreams.request(target, "GET", f"/v2/{target.upstream_name}/blobs/{digest}")
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        try:
            check_status(response, f"GET blob {digest}")
            status, location = response.status, response.headers.get("Location")
            length = response.headers.get("Content-Length") or ""
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        finally:
            finish(response)  # the body (case b, c) is never read here
        if status == 404:
            raise BlobUnknown({"digest": digest})
        size = int(length) if length.isascii() and length.isdigit() else None
        base = target.rule.upstream
        answer: BlobAnswer | None = None
        if status in REDIRECTS and location:
            url = urljoin(f"{base}/", location)
            try:
                # Only where a client may safely be sent (http(s), no credentials in it).
                parts = checked_redirect(url, base, self._upstreams.internal_allowed(target.rule))
            except UpstreamDown as refused:
                raise as_registry_error(refused, target) from None
            on_upstream = f"{parts.scheme}://{parts.netloc}" == base
            if not on_upstream or self._upstreams.anonymous_urls(target):
                answer = BlobAnswer(digest, url, size)  # case (a)
        elif status == 200 and self._upstreams.anonymous_urls(target):
            answer = BlobAnswer(digest, f"{base}/v2/{target.upstream_name}/blobs/{digest}", size)  # case (b)
        elif status != 200:
            raise as_registry_error(UpstreamDown(f"GET blob {digest}: HTTP {status}"), target)
        # Upstream has it (and answered sanely): the next pull is served from S3.
        self._fill.start(target.repository, digest)
        return answer or self._wait_for_fill(target, digest)  # case (c) waits

    def _wait_for_fill(self, target: CacheTarget, digest: str) -> BlobAnswer:
        deadline = self._clock() + self._settings.cache_fill_wait_seconds
        while True:
            try:
                found = self._blobs.download(target.repository, digest)
                return BlobAnswer(digest, found.url, found.blob.size, cached=True)
            except BlobUnknown:
                pass
            if self._clock() >= deadline:
                raise Unavailable(
                    {"digest": digest, "upstream": target.rule.host},
                    message="the blob is being copied from upstream into the cache; retry shortly",
                    retry_after=5,
                )
            self._sleep(WAIT_STEP_SECONDS)

    def stat(self, target: CacheTarget, digest: str) -> tuple[str, int | None]:
        """HEAD: (digest, size) from the repository, else from upstream's HEAD."""
        try:
            record = self._blobs.stat(target.repository, digest)
            return record.digest, record.size
        except BlobUnknown:
            pass
        try:
            response = self._upstreams.request(target, "HEAD", f"/v2/{target.upstream_name}/blobs/{digest}")
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        try:
            check_status(response, f"HEAD blob {digest}")
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        finally:
            finish(response)
        if response.status == 404:
            raise BlobUnknown({"digest": digest})
        size = _length(response) if response.status == 200 else None
        return digest, size if size is not None else self._first_byte_size(target, digest)

    def _first_byte_size(self, target: CacheTarget, digest: str) -> int:
        """The blob's size from a ``Range: bytes=0-0`` GET of it (its bytes never read)."""
        try:
            response = self._upstreams.open_blob(target, digest, {"Range": "bytes=0-0"})
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        try:
            check_status(response, f"GET blob {digest} (its first byte, for its size)")
            status, content_range = response.status, response.headers.get("Content-Range") or ""
            length = _length(response)
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        finally:
            finish(response)
        if status == 404:
            raise BlobUnknown({"digest": digest})
        total = content_range.rpartition("/")[2].strip()
        if status == 206 and content_range.startswith("bytes ") and total.isascii() and total.isdigit():
            return int(total)
        if status == 200 and length is not None:
            return length
        raise as_registry_error(UpstreamDown(f"upstream gave no size for blob {digest}"), target)


def _length(response: object) -> int | None:
    value = (response.headers.get("Content-Length") or "").strip()  # type: ignore[attr-defined]
    return int(value) if value.isascii() and value.isdigit() else None
