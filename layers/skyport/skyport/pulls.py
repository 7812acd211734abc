"""Last-pull times (issue 12): when each manifest was last pulled, without a DynamoDB
write on every pull. Retention's "keep what was pulled within" reads them, and so does
`skyport usage` (its last pull per repository).

What counts as a pull: a ``GET`` of a manifest, by tag or by digest, that the registry
answered with the manifest. A ``HEAD`` does not count. Tools ask HEAD to learn whether a
tag exists or what digest it names (docker before every pull, CI checks, `crane digest`,
replication, scanners): counting those would keep images alive that nobody runs. ECR
counts the same way (the pull of the image, i.e. the GET of its manifest). One
consequence, documented in README: ``docker pull`` of an image the machine already holds
sends only a HEAD, so it records nothing; a machine that really fetches the image GETs
it. A pull of an index records the index, and the client's GET of its platform's
manifest records that manifest by itself (no reading of the index here).

How the writes stay rare: each process keeps a bounded map (MAX_ENTRIES, least recently
written dropped first) of (repository, digest) → when this process last wrote (or
decided not to write) its record, and writes it at most once per ``interval_seconds``
(SKYPORT_PULL_RECORD_SECONDS, 3600 by default). The write itself is a conditional
UpdateItem that only moves ``last_pulled_ms`` forward past the interval
(storage/dynamodb/pulls.py, PULL_RECORD_IS_STALE): a thousand warm Lambdas pulling one
image cost a thousand tries in the first hour, of which one writes (a refused condition
changes no item and makes no stream record). An entry dropped from the map, or a new
process, costs one more try, never a wrong time.

Precision: ``last_pulled_ms`` is the time of a pull, and no pull went unrecorded for
longer than the interval: the real last pull is at most ``interval_seconds`` after the
recorded one. Retention periods are days, so an hour is far inside them.

The pull never waits for the write, nor fails with it: the route asks :meth:`note`
(memory only, no I/O) once the response is decided, and runs the write it hands back
after the response (a background task); the write logs and swallows every error. After
a failed write the next try comes RETRY_SECONDS later, not on every pull.
Under uvicorn the client has its response before the write starts. Behind Lambda,
Mangum returns the response when the app is done, its background task included: the
one GET an interval that writes (per manifest and warm instance) waits for one
UpdateItem, a few milliseconds; every other GET waits for nothing.

The records (``REPO#<name> / PULL#<digest>``, storage/keys.py) are not registry events
(the events function's filter lets them through to nothing) and go with their manifest:
the manifest delete's transaction removes the record (storage/dynamodb/manifests.py). A
GET racing that delete may write the record again after it; retention removes such
strays (records without a manifest) when it evaluates the repository.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 3600
# Entries of the per-process map: ~200 bytes each, so about 2 MB at most.
MAX_ENTRIES = 10_000
# After a failed write (throttling, an outage), the next try waits this long.
RETRY_SECONDS = 60


class PullStore(Protocol):
    """The table's side (storage/dynamodb/pulls.py)."""

    def record_pull(self, repository: str, digest: str, pulled_ms: int, stale_before_ms: int) -> bool:
        """Set the record's last_pulled_ms to ``pulled_ms`` unless it already holds a time
        at or after ``stale_before_ms``; False when it did (nothing written)."""
        ...

    def last_pulls(self, repository: str) -> Iterator[tuple[str, int]]:
        """(digest, last_pulled_ms) of every record of ``repository``, paged."""
        ...

    def forget_pull(self, repository: str, digest: str) -> None: ...


class PullRecorder:
    """Records pulls at most once per interval per (repository, digest) and process."""

    def __init__(
        self,
        store: PullStore,
        interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._store = store
        self._interval = interval_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        # (repository, digest) -> the clock() after which a write is due again.
        self._next_write: OrderedDict[tuple[str, str], float] = OrderedDict()

    def note(self, repository: str, digest: str) -> Callable[[], None] | None:
        """A pull of ``digest`` in ``repository`` was answered. Memory only: returns the
        write to run after the response when one is due, else None. The slot is taken
        now, so concurrent pulls in this process hand out one write between them."""
        key = (repository, digest)
        now = self._clock()
        with self._lock:
            due_at = self._next_write.get(key)
            if due_at is not None and now < due_at:
                return None
            self._next_write[key] = now + self._interval
            self._next_write.move_to_end(key)
            while len(self._next_write) > self._max_entries:
                self._next_write.popitem(last=False)
        return lambda: self._write(repository, digest)

    def _write(self, repository: str, digest: str) -> None:
        pulled_ms = int(self._wall_clock() * 1000)
        try:
            self._store.record_pull(repository, digest, pulled_ms, pulled_ms - self._interval * 1000)
        except Exception:  # noqa: BLE001 - a pull never fails for its record (module docstring)
            log.warning("last-pull record of %s@%s not written", repository, digest, exc_info=True)
            with self._lock:
                self._next_write[(repository, digest)] = self._clock() + min(RETRY_SECONDS, self._interval)
