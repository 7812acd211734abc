"""A per-process snapshot of a small set of rules read from the table (tag immutability,
pull-through cache): read at most once per ``cache_seconds``, so a request pays no read
for them; a change made elsewhere shows within that time, one made here at once
(``forget``). A failed refresh keeps the rules known before, if any (enforcement does not
lapse while DynamoDB throttles) and is tried again after RETRY_SECONDS, not on every
request; with none known, the failure propagates (StorageUnavailable: 503)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .storage.ports import StorageUnavailable

Rule = TypeVar("Rule")
# After a failed refresh, the rules known are kept this long before the next read.
RETRY_SECONDS = 5


class RuleSnapshot(Generic[Rule]):
    def __init__(
        self,
        load: Callable[[], tuple[Rule, ...]],
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: tuple[Rule, ...] | None = None
        self._loaded_at = 0.0

    def get(self) -> tuple[Rule, ...]:
        now = self._clock()
        with self._lock:
            if self._rules is not None and now - self._loaded_at < self._cache_seconds:
                return self._rules
            previous = self._rules
        try:
            loaded = self._load()
        except StorageUnavailable:
            if previous is None:
                raise
            with self._lock:
                self._loaded_at = now - max(self._cache_seconds - RETRY_SECONDS, 0)
            return previous
        with self._lock:
            self._rules, self._loaded_at = loaded, now
        return loaded

    def forget(self) -> None:
        """The next lookup reads the rules (after a change made in this process)."""
        with self._lock:
            self._rules = None
