"""The collector: a run, one page at a time (the argument: skyport/gc/__init__.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..storage import keys
from ..storage.dynamodb.gc import DONE, DynamoGcStore, RunState
from ..storage.ports import ObjectMissing, ObjectStore
from ..storage.s3_listings import S3Listings
from .hashes import HashSet64, RecentlySeen, hash64


class RepositoryForgetter(Protocol):
    """The catalog's side of deleting manifests (storage/dynamodb/manifests.py)."""

    def forget_repository_if_empty(self, repository: str) -> bool: ...


MANIFESTS, LINKS, BLOBS, ORPHANS = "manifests", "links", "blobs", "orphans"
ORPHAN_PREFIXES = ("blobs/", "uploads/")
# A Lambda invocation lasts at most 900 s: a lease a little longer outlives it.
DEFAULT_LEASE_SECONDS = 960
DEFAULT_PAGE_SIZE = 500
LAST_MODIFIED_RESOLUTION_MS = 1000
# What a report lists by name, per kind; the counters count everything.
LISTED_PER_KIND = 1000
# Descriptor fields of image manifests, indexes and artifact manifests that name content.
_DESCRIPTOR_LISTS = ("layers", "blobs", "manifests")
_DESCRIPTORS = ("config", "subject")


def references(body: bytes) -> set[str] | None:
    """The digests a manifest body names (config, layers, blobs, manifests, subject); None
    when the body cannot be read as a manifest (its repository keeps every link)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    found: set[str] = set()
    descriptors: list[Any] = [document.get(name) for name in _DESCRIPTORS]
    for name in _DESCRIPTOR_LISTS:
        value = document.get(name)
        if isinstance(value, list):
            descriptors.extend(value)
    for descriptor in descriptors:
        if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
            found.add(descriptor["digest"])
    return found


def child_manifests(body: bytes) -> set[str] | None:
    """The digests an index's ``manifests`` list names; None when the body is not JSON."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    entries = document.get("manifests") if isinstance(document, dict) else None
    return {
        entry["digest"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    }


@dataclass
class GcRun:
    """A run in progress in this process: its saved state, and what memory holds."""

    state: RunState
    dry_run: bool
    page_size: int
    resumed: bool = False
    # (repository, hashes of what its manifests reference, or None: keep all its links)
    repository: tuple[str, set[int] | None] | None = None
    recently_marked: RecentlySeen = field(default_factory=RecentlySeen)
    dry_marks: HashSet64 = field(default_factory=HashSet64)
    live_keys: HashSet64 | None = None
    # A page read and judged, its deletes and marks for the next step (and its cursor).
    pending: tuple[list[Any], Any] | None = None
    listed: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state.phase == DONE

    def count(self, name: str, amount: int = 1) -> None:
        self.state.counters[name] = self.state.counters.get(name, 0) + amount

    def went(self, kind: str, size: int, **fields: Any) -> None:
        self.count(f"{kind}_removed")
        self.count(f"{kind}_bytes", size)
        listed = self.listed.setdefault(kind, [])
        if len(listed) < LISTED_PER_KIND:
            listed.append({**fields, "bytes": size})


class GarbageCollector:
    def __init__(
        self,
        store: DynamoGcStore,
        objects: ObjectStore,
        listing: S3Listings,
        clock: Callable[[], float] = time.time,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        repositories: RepositoryForgetter | None = None,
    ) -> None:
        self._store = store
        self._repositories = repositories
        self._objects = objects
        self._listing = listing
        self._clock = clock
        self._lease_ms = lease_seconds * 1000
        self.owner = uuid.uuid4().hex

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # --- the public surface: begin, step, report (or run, which does all three) ---------

    def begin(
        self, grace_ms: int, dry_run: bool = False, page_size: int = DEFAULT_PAGE_SIZE, untagged: bool = False
    ) -> GcRun | None:
        """Start a run, or continue the unfinished one (its run id, start, grace and
        ``untagged`` kept); None when another invocation holds it. A dry run starts afresh
        and takes nothing. ``untagged``: untagged manifests go too (phase 0, below)."""
        if grace_ms < 0:
            raise ValueError("the grace period cannot be negative")
        now = self._now()
        fresh = RunState(
            run_id=uuid.uuid4().hex,
            started_ms=now,
            grace_ms=grace_ms,
            phase=MANIFESTS if untagged else LINKS,
            untagged=untagged,
        )
        if dry_run:
            return GcRun(fresh, dry_run=True, page_size=page_size)
        previous = self._store.read_run()
        if previous is not None and previous.phase != DONE:
            if self._store.take_over(previous.run_id, self.owner, now, now + self._lease_ms):
                return GcRun(previous, dry_run=False, page_size=page_size, resumed=True)
            return None
        if self._store.start_run(fresh, previous, self.owner, now + self._lease_ms):
            return GcRun(fresh, dry_run=False, page_size=page_size)
        return None

    def step(self, run: GcRun) -> bool:
        """One step of the current phase, its progress saved; False once the run is done.
        The link and blob phases take two steps a page: read it (and judge each item from
        what was read), then delete or mark, each delete under its condition. Anything may
        happen in between: that is what the conditions are for (tests/gc/test_race.py
        interleaves pushes there)."""
        if run.done:
            return False
        phase = run.state.phase
        if phase == MANIFESTS:
            self._manifests_page(run)
        elif phase == LINKS:
            self._links_page(run)
        elif phase == BLOBS:
            self._blobs_page(run)
        else:
            self._orphans_page(run)
        if run.pending is not None:
            return True  # a page read, nothing done yet: nothing to save
        if run.state.phase == DONE:
            run.state.finished_ms = self._now()
        if not run.dry_run:
            lease_until = 0 if run.done else self._now() + self._lease_ms
            self._store.save(run.state, self.owner, lease_until)
        return not run.done

    def run(
        self,
        grace_ms: int,
        dry_run: bool = False,
        time_left: Callable[[], float] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        untagged: bool = False,
    ) -> dict:
        """A run until done, or until ``time_left()`` (seconds) is no longer positive: the
        next call continues it."""
        run = self.begin(grace_ms, dry_run, page_size, untagged)
        if run is None:
            return {"busy": True, "message": "another garbage collection run holds the lease"}
        while self.step(run):
            # A page read is always finished (else the next invocation reads it again).
            if time_left is not None and time_left() <= 0 and run.pending is None:
                break
        return self.report(run)

    def report(self, run: GcRun) -> dict:
        state = run.state
        counters = state.counters
        kinds = ("manifests", "links", "blobs", "objects")
        return {
            "run_id": state.run_id,
            "dry_run": run.dry_run,
            "complete": run.done,
            "resumed": run.resumed,
            "phase": state.phase,
            "untagged": state.untagged,
            "started_ms": state.started_ms,
            "grace_seconds": state.grace_ms / 1000,
            "cutoff_ms": state.cutoff_ms,
            "removed": {kind: counters.get(f"{kind}_removed", 0) for kind in kinds},
            "bytes": {kind: counters.get(f"{kind}_bytes", 0) for kind in kinds},
            # A link's bytes are its blob's, counted again under blobs when the blob goes.
            "total_bytes": counters.get("blobs_bytes", 0) + counters.get("objects_bytes", 0),
            "kept": {
                "manifests": counters.get("manifests_kept", 0),
                "links": counters.get("links_kept", 0),
                "blobs": counters.get("blobs_kept", 0),
                "objects": counters.get("objects_kept", 0),
            },
            "listed": run.listed,
            "listed_limit": LISTED_PER_KIND,
        }

    # --- phase 0 (--untagged): untagged manifests ----------------------------------------

    def _manifests_page(self, run: GcRun) -> None:
        """A page of the catalog's repositories: in each, the manifests no tag names, no
        other manifest of the repository lists (an index's children), and that are not a
        referrer of a manifest still there, unwritten and unreferenced since the cutoff
        (MANIFEST_UNUSED_SINCE), go; then the repository, if empty, leaves the catalog."""
        state = run.state
        repositories, cursor = self._store.repository_page(state.cursor, run.page_size)
        for repository in repositories:
            self._untagged_in(run, repository)
        state.cursor = cursor
        if cursor is None:
            state.phase = LINKS

    def _untagged_in(self, run: GcRun, repository: str) -> None:
        state = run.state
        tagged = self._store.tagged(repository)
        present: set[str] = set()
        listed: set[str] = set()
        # (digest, size, subject, pushed_ms, used_ms): one repository's manifests, no bodies.
        manifests = []
        for manifest in self._store.manifests(repository):
            body = self._body(manifest.body, manifest.body_key)
            children = child_manifests(body) if body is not None else None
            if children is None:
                return  # a manifest we cannot read: the repository keeps every manifest
            present.add(manifest.digest)
            listed |= children
            manifests.append(
                (manifest.digest, manifest.size, manifest.subject, manifest.pushed_ms, manifest.used_ms)
            )
        removed = False
        for digest, size, subject, pushed_ms, used_ms in manifests:
            keep = (
                digest in tagged
                or digest in listed
                or (subject is not None and subject in present)
                or (pushed_ms is not None and pushed_ms >= state.cutoff_ms)
                or (used_ms is not None and used_ms >= state.cutoff_ms)
            )
            if keep:
                run.count("manifests_kept")
            elif run.dry_run or self._store.delete_untagged_manifest(
                repository, digest, subject, state.cutoff_ms
            ):
                run.went("manifests", size, repository=repository, digest=digest)
                removed = True
            else:
                run.count("manifests_kept")  # written or referenced since the page was read
        if removed and not run.dry_run and self._repositories is not None:
            self._repositories.forget_repository_if_empty(repository)

    def _body(self, body: bytes | None, body_key: str | None) -> bytes | None:
        if body is None and body_key:
            try:
                return self._objects.read(body_key, may_be_missing=True)
            except ObjectMissing:
                return None
        return body

    # --- phase 1: links ----------------------------------------------------------------------

    def _referenced(self, run: GcRun, repository: str) -> set[int] | None:
        if run.repository is not None and run.repository[0] == repository:
            return run.repository[1]
        referenced: set[int] | None = set()
        for manifest in self._store.manifests(repository):
            body = self._body(manifest.body, manifest.body_key)
            digests = references(body) if body is not None else None
            if digests is None:
                referenced = None  # a manifest we cannot read: keep all of the repository's links
                break
            assert referenced is not None
            referenced.update(hash64(digest) for digest in digests)
        run.repository = (repository, referenced)
        return referenced

    def _links_page(self, run: GcRun) -> None:
        state = run.state
        if run.pending is None:
            links, cursor = self._store.link_page(state.cursor, run.page_size)
            judged = []
            for link in links:
                referenced = self._referenced(run, link.repository)
                unreferenced = referenced is not None and hash64(link.digest) not in referenced
                unused = link.used_ms is None or link.used_ms < state.cutoff_ms
                judged.append((link, unreferenced and unused))
            run.pending = (judged, cursor)
            return
        judged, cursor = run.pending
        run.pending = None
        for link, collectable in judged:
            if collectable:
                if run.dry_run:
                    run.went("links", link.size, repository=link.repository, digest=link.digest)
                    continue
                if self._store.delete_link(link.repository, link.digest, state.cutoff_ms):
                    run.went("links", link.size, repository=link.repository, digest=link.digest)
                    continue
                # Used since the page was read (a push referenced it): it survives.
            run.count("links_kept")
            self._mark(run, link.digest)
        state.cursor = cursor
        if cursor is None:
            state.phase, run.repository = BLOBS, None

    def _mark(self, run: GcRun, digest: str) -> None:
        hashed = hash64(digest)
        if run.recently_marked.check_and_add(hashed):
            return
        if run.dry_run:
            run.dry_marks.add(hashed)
        elif self._store.mark_blob(digest, run.state.run_id):
            run.count("marks_written")

    # --- phase 2: blobs ----------------------------------------------------------------------

    def _blobs_page(self, run: GcRun) -> None:
        state = run.state
        if run.pending is None:
            run.pending = self._store.blob_page(state.cursor, run.page_size)
            return
        blobs, cursor = run.pending
        run.pending = None
        for blob in blobs:
            marked = hash64(blob.digest) in run.dry_marks if run.dry_run else blob.gc_mark == state.run_id
            used = blob.used_ms is not None and blob.used_ms >= state.cutoff_ms
            if marked or used:
                run.count("blobs_kept")
                continue
            if run.dry_run:
                run.went("blobs", blob.size, digest=blob.digest, key=blob.key)
            elif self._store.delete_blob(blob.digest, state.run_id, state.cutoff_ms):
                # The record first, then the bytes: a crash in between leaves an orphan
                # object (phase 3 of a later run), never a record without its object.
                self._objects.delete(blob.key)
                run.went("blobs", blob.size, digest=blob.digest, key=blob.key)
            else:
                run.count("blobs_kept")
        state.cursor = cursor
        if cursor is None:
            state.phase, state.cursor = ORPHANS, {"prefix": ORPHAN_PREFIXES[0], "token": None}

    # --- phase 3: orphan objects ---------------------------------------------------------------

    def _live_keys(self, run: GcRun) -> HashSet64:
        if run.live_keys is None:
            live = HashSet64()
            cursor = None
            while True:
                blobs, cursor = self._store.blob_page(cursor, max(run.page_size, 1000))
                for blob in blobs:
                    live.add(hash64(blob.key))
                if cursor is None:
                    break
            live.freeze()
            run.live_keys = live
        return run.live_keys

    def _orphans_page(self, run: GcRun) -> None:
        state = run.state
        live = self._live_keys(run)
        prefix, token = state.cursor["prefix"], state.cursor["token"]
        listed, token = self._listing.objects_page(prefix, token, run.page_size)
        for entry in listed:
            # LastModified has a resolution of one second (S3 lists it as whole seconds): an
            # object is older than the cutoff only when its second ended before it.
            if (
                int(entry.modified * 1000) + LAST_MODIFIED_RESOLUTION_MS > state.cutoff_ms
                or hash64(entry.key) in live
            ):
                run.count("objects_kept")
                continue
            upload_id = keys.upload_id_of_object(entry.key)
            if upload_id is not None and self._store.upload_session_exists(upload_id):
                run.count("objects_kept")  # an open upload's: the upload-expiry job's to judge
                continue
            if not run.dry_run:
                self._objects.delete(entry.key)
            run.went("objects", entry.size, key=entry.key)
        if token is not None:
            state.cursor = {"prefix": prefix, "token": token}
            return
        following = ORPHAN_PREFIXES.index(prefix) + 1
        if following < len(ORPHAN_PREFIXES):
            state.cursor = {"prefix": ORPHAN_PREFIXES[following], "token": None}
        else:
            state.phase, state.cursor, run.live_keys = DONE, None, None
