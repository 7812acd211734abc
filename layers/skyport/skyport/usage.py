"""Usage (issue 12): what each repository stores, and the registry in total.

Per repository, from one paged Query of its partition (``REPO#<name>``, keys.py):

- **stored bytes**: the blobs linked in it (``BLOB#<digest>`` links: each distinct digest
  once, at its size) plus its manifest bodies (``MANIFEST#<digest>``, at their size).
  Every link counts, referenced by a manifest or not: a link keeps its blob stored (and
  billed) until GC removes it, and counting them needs no manifest to be read or parsed,
  so usage stays one projected Query per repository whatever the manifests weigh.
- the number of **manifests** and **tags**;
- the **last push**: the newest ``pushed_ms`` of its manifests and tags (items written
  before pushed_ms existed have none and do not count);
- the **last pull**: the newest ``last_pulled_ms`` of its ``PULL#<digest>`` records
  (written by the last-pull recorder, at most once an interval per process); none: never.

The **total** over the repositories reported counts a blob or manifest shared by several
of them once (deduplicated by digest). Memory stays bounded: repositories are read one at
a time, page by page, and only the total keeps state, a set of the distinct digests seen,
compactly (a sha256 digest as its 32 raw bytes: about 110 bytes a distinct digest with the
set's own overhead, measured by tests/usage/test_cli.py, so a million distinct blobs cost
about 110 MB; the per-repository figures keep nothing).

The same figures come from the CLI (`skyport usage [PATTERN]`) and from the registry's
extension endpoints (routes/usage.py), where a caller sees only the repositories it may
pull.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .auth.policy import pattern_matches
from .catalog import CatalogService
from .errors import NameUnknown
from .reference import validate_name
from .storage.ports import ManifestIndex, UsageIndex

if TYPE_CHECKING:
    from .auth.policy import Access

# Repositories one extension request measures at most (each is a Query of its partition):
# a bigger `n` is answered with this many and a Link to the rest.
MAX_PAGE = 100
CATALOG_PAGE = 1000  # catalog names the CLI reads a time


def _compact(digest: str) -> bytes:
    """A digest as a set member: a sha256 one as its 32 raw bytes, any other as its text."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm == "sha256" and len(encoded) == 64:
        try:
            return bytes.fromhex(encoded)
        except ValueError:
            pass
    return digest.encode()


def _latest(current: int | None, candidate: int) -> int | None:
    if candidate <= 0:
        return current
    return candidate if current is None or candidate > current else current


@dataclass(slots=True)
class RepositoryUsage:
    name: str
    blobs: int = 0
    blob_bytes: int = 0
    manifests: int = 0
    manifest_bytes: int = 0
    tags: int = 0
    last_push_ms: int | None = None
    last_pull_ms: int | None = None  # None: never pulled (as far as the records go)

    @property
    def stored_bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes

    def fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stored_bytes": self.stored_bytes,
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "manifests": self.manifests,
            "manifest_bytes": self.manifest_bytes,
            "tags": self.tags,
            "last_push_ms": self.last_push_ms,
            "last_pull_ms": self.last_pull_ms,
        }


@dataclass(slots=True)
class UsageTotal:
    """The repositories added so far, a blob or manifest shared by several counted once."""

    repositories: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    manifests: int = 0
    manifest_bytes: int = 0
    tags: int = 0
    last_push_ms: int | None = None
    last_pull_ms: int | None = None
    _blobs_seen: set[bytes] = field(default_factory=set, repr=False)
    _manifests_seen: set[bytes] = field(default_factory=set, repr=False)

    @property
    def stored_bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes

    def add_blob(self, digest: str, size: int) -> None:
        key = _compact(digest)
        if key not in self._blobs_seen:
            self._blobs_seen.add(key)
            self.blobs += 1
            self.blob_bytes += size

    def add_manifest(self, digest: str, size: int) -> None:
        key = _compact(digest)
        if key not in self._manifests_seen:
            self._manifests_seen.add(key)
            self.manifests += 1
            self.manifest_bytes += size

    def add_repository(self, usage: RepositoryUsage) -> None:
        self.repositories += 1
        self.tags += usage.tags
        if usage.last_push_ms is not None:
            self.last_push_ms = _latest(self.last_push_ms, usage.last_push_ms)
        if usage.last_pull_ms is not None:
            self.last_pull_ms = _latest(self.last_pull_ms, usage.last_pull_ms)

    def fields(self) -> dict[str, Any]:
        return {
            "repositories": self.repositories,
            "stored_bytes": self.stored_bytes,
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "manifests": self.manifests,
            "manifest_bytes": self.manifest_bytes,
            "tags": self.tags,
            "last_push_ms": self.last_push_ms,
            "last_pull_ms": self.last_pull_ms,
        }


@dataclass(frozen=True, slots=True)
class UsagePage:
    """One page of the registry-level endpoint: its repositories, their total, and where
    the next page starts (None: this was the last)."""

    repositories: list[RepositoryUsage]
    total: UsageTotal
    next_after: str | None


class UsageService:
    def __init__(
        self, usage: UsageIndex, index: ManifestIndex, clock: Callable[[], float] = time.time
    ) -> None:
        self._usage = usage
        self._index = index
        self._clock = clock
        self._catalog = CatalogService(index)

    def measure(self, repository: str, total: UsageTotal | None = None) -> RepositoryUsage:
        """The figures of one repository (and, with ``total``, added to it)."""
        usage = RepositoryUsage(repository)
        for item in self._usage.repository_items(repository):
            if item.kind == "blob":
                usage.blobs += 1
                usage.blob_bytes += item.size
                if total is not None:
                    total.add_blob(item.digest, item.size)
            elif item.kind == "manifest":
                usage.manifests += 1
                usage.manifest_bytes += item.size
                usage.last_push_ms = _latest(usage.last_push_ms, item.at_ms)
                if total is not None:
                    total.add_manifest(item.digest, item.size)
            elif item.kind == "tag":
                usage.tags += 1
                usage.last_push_ms = _latest(usage.last_push_ms, item.at_ms)
            elif item.kind == "pull":
                usage.last_pull_ms = _latest(usage.last_pull_ms, item.at_ms)
        if total is not None:
            total.add_repository(usage)
        return usage

    def of(self, repository: str) -> RepositoryUsage:
        """One repository's figures (`GET /v2/<name>/_skyport/usage`): NAME_UNKNOWN when
        the catalog does not list it, as for its tags."""
        validate_name(repository)
        if not self._index.repository_exists(repository):
            raise NameUnknown({"name": repository})
        return self.measure(repository)

    def page(self, limit: int, last: str | None, reader: Access | None = None) -> UsagePage:
        """Up to ``limit`` (at most MAX_PAGE) repositories after ``last`` in catalog order,
        only those ``reader`` may pull (auth on), with their total."""
        if last is not None:
            validate_name(last)
        listed = self._catalog.list(min(limit, MAX_PAGE), last, reader)
        total = UsageTotal()
        repositories = [self.measure(name, total) for name in listed.items]
        return UsagePage(repositories, total, listed.next_after)

    def total(self, reader: Access | None = None, deadline: float | None = None) -> tuple[UsageTotal, bool]:
        """The total over every repository ``reader`` may pull (auth on; None: all), and
        whether it is complete: past ``deadline`` (epoch seconds) it stops with what it
        has measured, a lower bound (`GET /v2/_skyport/usage/total`, within API
        Gateway's 30 s)."""
        total = UsageTotal()
        last: str | None = None
        while True:
            listed = self._catalog.list(CATALOG_PAGE, last, reader)
            for name in listed.items:
                if deadline is not None and self._clock() >= deadline:
                    return total, False
                self.measure(name, total)
            if listed.next_after is None:
                return total, True
            last = listed.next_after

    def repositories(self, pattern: str | None, total: UsageTotal) -> Iterator[RepositoryUsage]:
        """Every repository of the catalog matching ``pattern`` (the grants' syntax; None:
        all), one at a time, each added to ``total`` (`skyport usage`)."""
        last: str | None = None
        while True:
            listed = self._index.list_repositories(CATALOG_PAGE, last)
            for name in listed.items:
                if pattern is None or pattern_matches(pattern, name):
                    yield self.measure(name, total)
            if not listed.has_more or not listed.items:
                return
            last = listed.items[-1]
