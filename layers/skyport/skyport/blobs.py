"""Blobs: existence, download and deletion (distribution-spec "Pulling blobs", "Deleting blobs")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .blob_cache import BlobLinkCache
from .digest import Digest
from .errors import BlobUnknown
from .reference import validate_name
from .storage.ports import BlobIndex, BlobRecord, ObjectMissing, ObjectStore

if TYPE_CHECKING:
    from .auth.policy import Access


@dataclass(frozen=True, slots=True)
class BlobDownload:
    blob: BlobRecord
    url: str


class BlobService:
    def __init__(
        self,
        objects: ObjectStore,
        index: BlobIndex,
        presign_expiry_seconds: int,
        automatic_mount: bool = True,
        before_delete: Callable[[str, str], None] | None = None,
        links: BlobLinkCache | None = None,
    ) -> None:
        self._objects = objects
        self._index = index
        self._expiry = presign_expiry_seconds
        self._automatic_mount = automatic_mount
        # Raises to refuse a delete (registry.py: a blob an immutable tag's image uses).
        self._before_delete = before_delete
        # Links already read or written by this process (blob_cache.py: why that is
        # sound, and how long another instance's delete may go unseen). Off by default.
        self._links = links if links is not None else BlobLinkCache(0, 0)

    def cached(self, repository: str, digest: str) -> BlobRecord | None:
        """The link if this process holds it, with no storage call (safe on the event
        loop); None: ask ``stat``. Bad names and digests raise as ``stat`` does."""
        validate_name(repository)
        Digest.parse(digest)
        return self._links.get(repository, digest)

    def forget(self, repository: str, digest: str) -> None:
        """The link went by another way than ``delete`` (the collector, in this process)."""
        self._links.forget(repository, digest)

    def stat(self, repository: str, digest: str) -> BlobRecord:
        """HEAD: answered from the link item alone, no S3 call; from memory when cached."""
        record = self.cached(repository, digest)
        if record is not None:
            return record
        generation = self._links.generation()
        record = self._index.get_link(repository, digest)
        if record is None:
            raise BlobUnknown({"digest": digest})  # never cached: a push elsewhere shows at once
        self._links.put(repository, record, generation)
        return record

    def download(self, repository: str, digest: str) -> BlobDownload:
        """GET: a presigned URL, signed locally, so one DynamoDB read in all (none when
        the link is cached)."""
        return self.presigned(self.stat(repository, digest))

    def presigned(self, record: BlobRecord) -> BlobDownload:
        """The download of a blob already looked up: signing is local CPU, no request."""
        return BlobDownload(record, self._objects.presign_get(record.key, self._expiry))

    def stream(self, repository: str, digest: str) -> tuple[BlobRecord, Iterator[bytes]]:
        """GET when the server delivers blobs itself (local "proxy" mode)."""
        record = self.stat(repository, digest)
        try:
            return record, self._objects.stream(record.key)
        except ObjectMissing as missing:
            self._links.forget(repository, digest)
            # Linked, but its object is gone (deleted behind the index's back): to the
            # client the blob is unknown (distribution-spec "Pulling blobs": 404).
            raise BlobUnknown({"digest": digest}) from missing

    def delete(self, repository: str, digest: str) -> None:
        """Removes the blob from this repository only: the bytes stay in the bucket,
        for the other repositories that link them (the garbage collector, skyport/gc,
        removes them once no repository does)."""
        validate_name(repository)
        Digest.parse(digest)
        if self._before_delete is not None:
            self._before_delete(repository, digest)
        try:
            unlinked = self._index.unlink(repository, digest)
        finally:
            # After the unlink, so no read of this process can refill the entry from the
            # old link (the cache's generation drops fills that started before); and even
            # when the unlink's answer was lost: it may have happened.
            self._links.forget(repository, digest)
        if not unlinked:
            raise BlobUnknown({"digest": digest})

    def mount(
        self,
        repository: str,
        digest: str,
        source: str | None,
        reader: Access | None = None,
        size: int | None = None,
    ) -> BlobRecord | None:
        """Cross-repository mount (distribution-spec "Mounting a blob from another
        repository"). ``reader`` says which repositories the caller may pull (None: all,
        auth off): a blob is only mounted from one of those. Without ``source``, any
        blob the registry holds is mounted if the caller may pull everything; else
        only one already in ``repository``; and never with ``automatic_mount`` off.
        None means not mountable: the caller starts a normal upload instead. ``size``:
        the size the caller says the blob has; a blob of another size is not mounted (the
        caller's upload will fail verification, and nothing was linked meanwhile)."""
        validate_name(repository)
        Digest.parse(digest)
        if source is not None:
            try:
                validate_name(source)
            except Exception:
                return None
            if reader is not None and not reader.may_pull(source):
                return None  # as if absent: no hint that the blob is there
            record = self._index.get_link(source, digest)
        elif not self._automatic_mount:
            return None
        elif reader is None or reader.pulls_everything:
            record = self._index.get_blob(digest)
        else:
            record = self._index.get_link(repository, digest)
        if record is None or (size is not None and record.size != size):
            return None
        # The blob's record first, stamped as used (the garbage collector keeps it), then
        # the link, copied from that record. No record (the collector removed it since the
        # read above): not mountable, the client uploads it, as if it were new.
        generation = self._links.generation()
        stored = self._index.touch_blob(digest)
        if stored is None or stored.size != record.size:
            return None
        self._index.link(repository, stored)
        self._links.put(repository, stored, generation)
        return stored

    def discard_unregistered(self, digest: str, key: str) -> None:
        """Delete the object at ``key``, freshly uploaded as ``digest``, unless the blob is
        recorded at that key (a registration whose answer was lost). Raises
        StorageUnavailable, and then the object stays."""
        stored = self._index.get_blob(digest)
        if stored is None or stored.key != key:
            self._objects.delete(key)

    def register(self, repository: str, record: BlobRecord) -> BlobRecord:
        """Record a freshly uploaded blob and make it visible in ``repository``.
        When the same digest was recorded first by someone else, theirs wins and
        the caller's copy of the bytes is deleted."""
        generation = self._links.generation()
        stored = self._index.add_blob(record)
        if stored.key != record.key:
            self._objects.delete(record.key)
        self._index.link(repository, stored)
        # Filled on push: the pull that usually follows makes no read.
        self._links.put(repository, stored, generation)
        return stored
