"""Manifests through the cache (issue 13).

- **By digest**: served from the repository when it holds it; else fetched from upstream
  once, its bytes checked against the digest, and stored for good (content-addressed:
  immutable). An index's children are fetched the same way when a client asks for them.
- **By tag**: a cached tag is served without asking upstream for ``recheck_seconds``
  (SKYPORT_CACHE_TAG_RECHECK_SECONDS) after it was last checked; then one HEAD upstream
  (HEADs do not count against Docker Hub's pull limit) tells whether it still names the
  same digest (the check time is stamped) or moved (the new manifest is fetched and
  stored). A tag never cached is fetched with a GET.
- **Upstream down, or limiting us** (UpstreamDown/Limited, upstream.py): a cached copy is
  served, with ``Warning: 110 - "..."`` (RFC 7234 section 5.5.1, "Response is Stale");
  without one, 503 UNAVAILABLE or 429 TOOMANYREQUESTS with Retry-After.
- What upstream answers is checked before anything is stored: its size (at most
  settings.max_manifest_size, read no further), its sha256 against the digest asked for
  and against Docker-Content-Digest, and that it parses as a manifest. A mismatch is
  refused (UNAVAILABLE, logged), nothing stored.

Fetched manifests are stored through the manifest index like a push (so events, usage,
referrers, the catalog and lifecycle see them), without the push's check that every blob
is in the repository: blobs arrive lazily, when a client pulls them (blobs.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import urllib3

from ..config import Settings
from ..digest import CANONICAL_ALGORITHM, Digest, is_digest
from ..errors import ManifestInvalid, ManifestUnknown, Unavailable
from ..manifests import ManifestService, accepts, manifest_record, parse_manifest
from ..reference import validate_tag
from ..storage.ports import ManifestIndex, ManifestRecord, ObjectStore
from .rules import CacheTarget
from .upstream import (
    MANIFEST_ACCEPT,
    UpstreamDenied,
    UpstreamDown,
    Upstreams,
    as_registry_error,
    check_status,
    finish,
)

logger = logging.getLogger("skyport.pull_through")


class CachedTags(Protocol):
    def cached_tag(self, repository: str, tag: str) -> tuple[ManifestRecord, int] | None: ...
    def mark_checked(self, repository: str, tag: str, digest: str, now_ms: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class CachedManifest:
    record: ManifestRecord
    body: bytes | None
    warning: str | None = None  # the Warning header, when served stale


class _NotAManifest(Exception):
    """Upstream's answer is refused (too big, wrong digest, not a manifest)."""


class CachedManifests:
    def __init__(
        self,
        manifests: ManifestService,
        index: ManifestIndex,
        objects: ObjectStore,
        tags: CachedTags,
        upstreams: Upstreams,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._manifests = manifests
        self._index = index
        self._objects = objects
        self._tags = tags
        self._upstreams = upstreams
        self._settings = settings
        self._clock = clock

    def fetch(
        self, target: CacheTarget, reference: str, accept: Iterable[str], include_body: bool
    ) -> CachedManifest:
        accept = list(accept)
        if is_digest(reference):
            Digest.parse(reference)
            return self._by_digest(target, reference, accept, include_body)
        validate_tag(reference)
        return self._by_tag(target, reference, accept, include_body)

    # --- by digest --------------------------------------------------------------------

    def _by_digest(
        self, target: CacheTarget, digest: str, accept: list[str], include_body: bool
    ) -> CachedManifest:
        record = self._index.get_manifest(target.repository, digest)
        if record is None:
            try:
                record = self._download(target, digest, None)
            except (UpstreamDown, UpstreamDenied) as error:
                raise as_registry_error(error, target) from None
            if record is None:
                raise ManifestUnknown({"name": target.repository, "reference": digest})
        return self._answer(target.repository, digest, record, accept, include_body)

    # --- by tag -----------------------------------------------------------------------

    def _by_tag(self, target: CacheTarget, tag: str, accept: list[str], include_body: bool) -> CachedManifest:
        cached = self._tags.cached_tag(target.repository, tag)
        now_ms = int(self._clock() * 1000)
        if cached is not None:
            record, checked_ms = cached
            if now_ms - checked_ms < self._settings.cache_tag_recheck_seconds * 1000:
                return self._answer(target.repository, tag, record, accept, include_body)
            try:
                current = self._head(target, tag)
                if current == record.digest:
                    self._tags.mark_checked(target.repository, tag, record.digest, now_ms)
                    return self._answer(target.repository, tag, record, accept, include_body)
                if current is None:
                    # Upstream says the tag is gone: it is the source of tags. The cached
                    # item stays (lifecycle removes it); a later push there brings it back.
                    raise ManifestUnknown({"name": target.repository, "reference": tag})
                fresh = self._download(target, tag, current or None)
                if fresh is None:
                    raise ManifestUnknown({"name": target.repository, "reference": tag})
                return self._answer(target.repository, tag, fresh, accept, include_body)
            except UpstreamDown as error:
                # UpstreamLimited too (a subclass): the stale copy beats a failed pull.
                logger.warning(
                    "cache %s: serving %s:%s stale: %s",
                    target.rule.prefix,
                    target.repository,
                    tag,
                    error.reason,
                )
                answer = self._answer(target.repository, tag, record, accept, include_body)
                checked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checked_ms / 1000))
                warning = (
                    f'110 - "Response is Stale: upstream {target.rule.host} unavailable ({error.reason}); '
                    f'cached copy last checked {checked}"'
                )
                return CachedManifest(answer.record, answer.body, warning)
            except UpstreamDenied as error:
                raise as_registry_error(error, target) from None
        try:
            fresh = self._download(target, tag, None)
        except (UpstreamDown, UpstreamDenied) as error:
            raise as_registry_error(error, target) from None
        if fresh is None:
            raise ManifestUnknown({"name": target.repository, "reference": tag})
        return self._answer(target.repository, tag, fresh, accept, include_body)

    # --- pieces -----------------------------------------------------------------------

    def _answer(
        self, repository: str, reference: str, record: ManifestRecord, accept: list[str], include_body: bool
    ) -> CachedManifest:
        if not accepts(record.media_type, accept):
            raise ManifestUnknown(
                {"name": repository, "reference": reference, "mediaType": record.media_type},
                message="manifest exists, but not in a media type the client accepts",
            )
        if not include_body:
            return CachedManifest(record, None)
        body = record.body if record.body is not None else self._objects.read(record.body_key or "")
        return CachedManifest(record, body)

    def _accept_header(self) -> dict[str, str]:
        return {"Accept": ", ".join(MANIFEST_ACCEPT)}

    def _head(self, target: CacheTarget, tag: str) -> str | None:
        """The digest upstream's tag names now ("" when it answers none), None: no such tag."""
        response = self._upstreams.request(
            target, "HEAD", f"/v2/{target.upstream_name}/manifests/{tag}", self._accept_header()
        )
        try:
            check_status(response, f"HEAD manifest {tag}")
            if response.status == 404:
                return None
            if response.status != 200:
                raise UpstreamDown(f"HEAD manifest {tag}: HTTP {response.status}")
            return response.headers.get("Docker-Content-Digest") or ""
        finally:
            finish(response)

    def _download(self, target: CacheTarget, reference: str, expected: str | None) -> ManifestRecord | None:
        """GET ``reference`` upstream, check it, store it (with the tag, when it is one);
        None when upstream has no such manifest."""
        response = self._upstreams.request(
            target, "GET", f"/v2/{target.upstream_name}/manifests/{reference}", self._accept_header()
        )
        limit = self._settings.max_manifest_size
        try:
            check_status(response, f"GET manifest {reference}")
            if response.status == 404:
                return None
            if response.status != 200:
                raise UpstreamDown(f"GET manifest {reference}: HTTP {response.status}")
            try:
                body = response.read(limit + 1)
            except urllib3.exceptions.HTTPError as error:
                raise UpstreamDown(f"GET manifest {reference}: {type(error).__name__}") from None
        finally:
            finish(response)
        content_type = response.headers.get("Content-Type")
        answered = response.headers.get("Docker-Content-Digest") or None
        try:
            return self._store(target, reference, body, content_type, expected, answered)
        except _NotAManifest as refused:
            logger.warning(
                "cache %s: refused %s@%s: %s", target.rule.prefix, target.upstream_name, reference, refused
            )
            raise Unavailable(
                {"upstream": target.rule.host, "reference": reference},
                message=f"upstream's manifest {reference} was refused ({refused}); nothing was cached",
            ) from None

    def _store(
        self,
        target: CacheTarget,
        reference: str,
        body: bytes,
        content_type: str | None,
        expected: str | None,
        answered: str | None,
    ) -> ManifestRecord:
        if len(body) > self._settings.max_manifest_size:
            raise _NotAManifest(f"larger than {self._settings.max_manifest_size} bytes")
        tag = None if is_digest(reference) else reference
        claimed = [value for value in (reference if tag is None else None, expected, answered) if value]
        digest = str(Digest.of(body, CANONICAL_ALGORITHM))
        for value in claimed:
            try:
                given = Digest.parse(value)
            except Exception:  # noqa: BLE001 - an upstream header we cannot read
                raise _NotAManifest(f"upstream named an invalid digest {value[:100]!r}") from None
            if str(Digest.of(body, given.algorithm)) != value:
                raise _NotAManifest(f"the body does not match {value}")
            if tag is None:
                digest = value
        try:
            parsed = parse_manifest(body, content_type, self._settings.max_manifest_references)
        except ManifestInvalid as invalid:
            raise _NotAManifest(invalid.message) from None
        record = manifest_record(digest, body, parsed, self._settings.inline_manifest_limit)
        if record.body is None:
            self._objects.put(record.body_key or "", body)
        # No reference checks (blobs come when pulled); the tag follows upstream, whatever
        # immutability rules say: a cache mirrors, it does not decide.
        self._index.put_manifest(target.repository, record, tag, {}, [], parsed.subject)
        if tag is not None:
            self._tags.mark_checked(target.repository, tag, digest, int(self._clock() * 1000))
        return record
