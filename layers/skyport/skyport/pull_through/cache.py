"""The pull-through cache as the API sees it: one service whose methods the manifest and
blob routes call instead of the plain services (they fall back to them for names no rule
covers), and the refusal of client writes into a cache prefix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..blobs import BlobService
from ..errors import BlobUnknown, Denied, ManifestUnknown
from ..manifests import ManifestService
from .blobs import BlobAnswer, CachedBlobs
from .manifests import CachedManifest, CachedManifests
from .rules import CacheRules, CacheTarget

if TYPE_CHECKING:
    from ..auth.policy import Access
    from ..storage.ports import ManifestIndex


class PullThroughCache:
    def __init__(
        self,
        rules: CacheRules,
        manifests: ManifestService,
        blobs: BlobService,
        cached_manifests: CachedManifests,
        cached_blobs: CachedBlobs,
        index: ManifestIndex,
    ) -> None:
        self.rules = rules
        self._manifests = manifests
        self._blobs = blobs
        self._cached_manifests = cached_manifests
        self._cached_blobs = cached_blobs
        self._index = index

    def _mirror(self, name: str, reader: Access | None) -> CacheTarget | None:
        """The mirror rule's target for unprefixed ``name``, when there is a mirror rule and
        the registry holds no repository of that name (rules.py: the mirror)."""
        target = self.rules.mirror_target(name)
        if target is None or self._index.repository_exists(name):
            return None
        if reader is not None and not reader.may_pull(target.repository):
            raise Denied(
                {"name": name, "stored_as": target.repository},
                message=f"{name} is mirrored from {target.rule.host} and stored as {target.repository}: "
                "pulling it needs pull permission on both names",
            )
        return target

    def manifest(
        self,
        name: str,
        reference: str,
        accept: Iterable[str],
        include_body: bool,
        reader: Access | None = None,
    ) -> CachedManifest:
        accept = list(accept)
        target = self.rules.target(name)
        if target is not None:
            return self._cached_manifests.fetch(target, reference, accept, include_body)
        try:
            record, body = self._manifests.fetch(name, reference, accept, include_body=include_body)
            return CachedManifest(record, body)
        except ManifestUnknown as unknown:
            if isinstance(unknown.detail, dict) and "mediaType" in unknown.detail:
                raise  # it is here, in a type the client does not accept
            mirror = self._mirror(name, reader)
            if mirror is None:
                raise
        return self._cached_manifests.fetch(mirror, reference, accept, include_body)

    def blob(
        self, name: str, digest: str, reader: Access | None = None, known_missing: bool = False
    ) -> BlobAnswer:
        """GET: where the client fetches the blob. ``known_missing``: the caller found no
        blob ``name`` holds (proxy delivery): only the cache may still answer."""
        target = self.rules.target(name)
        if target is None:
            try:
                if known_missing:
                    raise BlobUnknown({"digest": digest})
                found = self._blobs.download(name, digest)
                return BlobAnswer(found.blob.digest, found.url, found.blob.size, cached=True)
            except BlobUnknown:
                target = self._mirror(name, reader)
                if target is None:
                    raise
        return self._cached_blobs.download(target, digest)

    def blob_stat(self, name: str, digest: str, reader: Access | None = None) -> tuple[str, int | None]:
        target = self.rules.target(name)
        if target is None:
            try:
                record = self._blobs.stat(name, digest)
                return record.digest, record.size
            except BlobUnknown:
                target = self._mirror(name, reader)
                if target is None:
                    raise
        return self._cached_blobs.stat(target, digest)

    def refuse_client_write(self, name: str, action: str) -> None:
        self.rules.refuse_client_write(name, action)
