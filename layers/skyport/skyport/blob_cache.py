"""A process-local cache of blob links: (repository, digest) -> BlobRecord.

Why it is sound: a link record is immutable once written. The bytes under a digest
never change, and ``BlobIndex.link`` always writes the blob's one record (digest, size,
S3 key: ``add_blob`` keeps the first key recorded). Only two things remove a link: a
blob DELETE (``BlobService.delete``, which invalidates this process's entry at once)
and the garbage collector (skyport/gc, another process). Other instances of the API
(Lambda runs many) cannot tell this one about their deletes, so every entry also dies
``ttl_seconds`` after it was filled: that is the bound README states, the longest a
deleted blob may still be answered by an instance that had it cached.

What it never holds: a miss. A 404 is always asked of the table again, so a blob
pushed through another instance is visible here at once.

Bounded by entries (least recently used goes first); an entry is the key (repository,
digest) and the record (digest, size, S3 key): about 500 bytes with the dict and
ordering overhead (measured with tracemalloc), so the default of 4096 entries is about
2 MiB. Thread-safe: the API runs storage calls in worker
threads (skyport.concurrency) while the event loop reads the cache inline.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .storage.ports import BlobRecord


class BlobLinkCache:
    def __init__(
        self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, BlobRecord]] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every forget: a fill that began (read or wrote the table) before a
        # delete of this process must not land after it and revive the deleted link.
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0 and self._ttl > 0

    def get(self, repository: str, digest: str) -> BlobRecord | None:
        """The cached link, or None (never cached, expired, evicted, or the cache is off)."""
        if not self.enabled:
            return None
        key = (repository, digest)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, record = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return record

    def generation(self) -> int:
        """Take before the table call whose answer ``put`` will store."""
        return self._generation

    def put(self, repository: str, record: BlobRecord, generation: int) -> None:
        """Remember that ``repository`` links ``record``, as the table said after
        ``generation()`` was taken; dropped if this process deleted any blob since."""
        if not self.enabled:
            return
        key = (repository, record.digest)
        with self._lock:
            if generation != self._generation:
                return
            self._entries[key] = (self._clock() + self._ttl, record)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget(self, repository: str, digest: str) -> None:
        """This process unlinked the blob: answer 404 from now on, not after the TTL."""
        with self._lock:
            self._generation += 1
            self._entries.pop((repository, digest), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
