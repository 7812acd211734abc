"""Abandoned uploads expire (issue 12): the sweep that removes what upload sessions leave
behind once nobody can use them any more.

An upload session (``UPLOAD#<id>``, skyport/uploads.py, skyport/direct_uploads.py) has a
TTL, ``expires_at``. DynamoDB's TTL deletes the item eventually (up to days late; moto
never does), and never touches S3: the session's multipart upload (parts billed for ever)
and its tail object under ``uploads/<id>/`` stay. The sweep, in three passes:

1. **Expired sessions** (a paged Scan with a filter): each is deleted under a named
   condition (``SESSION_STILL_EXPIRED``, storage/dynamodb/upload_expiry.py: still expired
   at the cutoff, no live lease), removed from its ``OPEN_UPLOADS#`` entry, then its
   multipart upload is aborted and its tail object deleted, as the item deleted named them.
   The cutoff is ``upload_lease_seconds`` before now: a request that claimed the session
   just before it expired keeps its whole lease. Once the session is gone no request can
   claim it (claims need the item), so nothing new is written under its id.
2. **Multipart uploads under** ``blobs/`` (ListMultipartUploads, paged) initiated, and
   given their last part (ListParts), more than the grace period ago, whose session is
   gone: aborted. They are what TTL left when it
   deleted a session, and crash leftovers (a direct upload starts its multipart upload
   before its session; a fold's staging upload). A multipart upload whose session still
   exists is never touched here: a live session's is in use, an expired one's is pass 1's.
   Completed objects under ``blobs/`` are online GC's (skyport gc), never this sweep's.
3. **Tail objects under** ``uploads/`` (ListObjectsV2, paged) older than the grace period
   whose session is gone: deleted. The same rule: a session that exists keeps its tails.

Nothing belonging to a live session is touched: pass 1 removes only expired, unleased
sessions, by a conditional delete; passes 2 and 3 only what no stored session names (a
consistent read), and only past the grace period (by default the upload TTL, so even a
session that was created after the listing began is far younger than anything removed).

A dry run reports what would go (sessions, multipart uploads, tail objects, bytes), a real
run what went. Work is bounded by a deadline (the scheduled function's remaining time):
past it the sweep stops and says so (``complete`` false); the next run continues, since
what was removed is not listed again. The S3 lifecycle rules (template.yaml, 8 days) stay
as the backstop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Settings
from .storage import keys
from .storage.ports import ExpiringSessions, ObjectStore, StorageUnavailable, UploadLeftovers

SCAN_PAGE = 500  # items a Scan call examines (its filter keeps the expired sessions)
MAX_LISTED = 1000  # entries the report names one by one; the counts cover everything
MAX_ERRORS_LISTED = 20

SESSION, MULTIPART, TAIL = "session", "multipart_upload", "tail_object"


class _OutOfTime(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str  # session | multipart_upload | tail_object
    name: str  # the upload id (session), or the S3 key
    bytes: int
    repository: str | None = None  # sessions only


@dataclass(slots=True)
class ExpiryReport:
    """What a sweep removed (a dry run: would remove). ``complete`` is false when the
    deadline stopped it; ``kept`` counts leftovers seen but kept because their session
    is still stored (live, or expired but leased: a later run takes it)."""

    dry_run: bool
    sessions: int = 0
    multipart_uploads: int = 0
    tail_objects: int = 0
    bytes: int = 0
    kept: int = 0
    complete: bool = True
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    removed: list[Leftover] = field(default_factory=list)

    def count(self, leftover: Leftover) -> None:
        if leftover.kind == SESSION:
            self.sessions += 1
        elif leftover.kind == MULTIPART:
            self.multipart_uploads += 1
        else:
            self.tail_objects += 1
        self.bytes += leftover.bytes
        if len(self.removed) < MAX_LISTED:
            self.removed.append(leftover)

    def record_error(self, what: str, error: Exception) -> None:
        self.errors += 1
        if len(self.error_messages) < MAX_ERRORS_LISTED:
            self.error_messages.append(f"{what}: {error}")

    def fields(self) -> dict[str, Any]:
        """As JSON (the CLI's --json and the scheduled function's result)."""
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            "sessions": self.sessions,
            "multipart_uploads": self.multipart_uploads,
            "tail_objects": self.tail_objects,
            "bytes": self.bytes,
            "kept": self.kept,
            "errors": self.errors,
            "error_messages": list(self.error_messages),
            "removed": [
                {"kind": r.kind, "name": r.name, "bytes": r.bytes}
                | ({"repository": r.repository} if r.repository else {})
                for r in self.removed
            ],
            "removed_truncated": self.sessions + self.multipart_uploads + self.tail_objects
            > len(self.removed),
        }


class _ObjectStoreWithListings(ObjectStore, UploadLeftovers, Protocol):
    """S3 as the sweep uses it: removals (ObjectStore) and listings."""


class UploadExpiry:
    def __init__(
        self,
        objects: _ObjectStoreWithListings,
        sessions: ExpiringSessions,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    def sweep(
        self, *, dry_run: bool = False, deadline: float | None = None, grace_seconds: int | None = None
    ) -> ExpiryReport:
        """One sweep (the module doc). ``deadline``: epoch seconds past which it stops;
        ``grace_seconds``: how old a session-less multipart upload or tail must be
        (default: the upload TTL)."""
        grace = self._settings.upload_ttl_seconds if grace_seconds is None else max(0, grace_seconds)
        now = int(self._clock())
        report = ExpiryReport(dry_run)
        try:
            self._expired_sessions(report, now, deadline)
            self._orphan_multipart_uploads(report, now - grace, deadline)
            self._orphan_tails(report, now - grace, deadline)
        except _OutOfTime:
            report.complete = False
        return report

    def _check_time(self, deadline: float | None) -> None:
        if deadline is not None and self._clock() >= deadline:
            raise _OutOfTime

    def _guarded(self, report: ExpiryReport, what: str, items: Iterator, deadline: float | None) -> Iterator:
        """``items`` one by one, the deadline checked before each; a listing that fails
        midway ends the pass (reported), not the sweep."""
        try:
            for item in items:
                self._check_time(deadline)
                yield item
        except StorageUnavailable as error:
            report.record_error(what, error)

    # --- pass 1 ---------------------------------------------------------------------------

    def _expired_sessions(self, report: ExpiryReport, now: int, deadline: float | None) -> None:
        cutoff = now - self._settings.upload_lease_seconds
        for session in self._guarded(
            report, "scan of upload sessions", self._sessions.expired(cutoff, SCAN_PAGE), deadline
        ):
            try:
                if not report.dry_run:
                    removed = self._sessions.expire(session, cutoff, now)
                    if removed is None:
                        report.kept += 1  # leased, or changed: a later run sees it again
                        continue
                    session = removed
                size = session.tail_size if session.tail_key else 0
                if session.multipart_id:
                    size += self._objects.multipart_parts(session.blob_key, session.multipart_id)[0]
                if not report.dry_run:
                    if session.multipart_id:
                        self._objects.abort_multipart(session.blob_key, session.multipart_id)
                    if session.tail_key:
                        self._objects.delete(session.tail_key)
            except StorageUnavailable as error:
                # A session removed whose S3 state stayed: passes 2 and 3 of a later run
                # find it session-less (the lifecycle rules at the latest).
                report.record_error(f"session {session.upload_id}", error)
                continue
            report.count(Leftover(SESSION, session.upload_id, size, session.repository))

    # --- pass 2 ---------------------------------------------------------------------------

    def _orphan_multipart_uploads(
        self, report: ExpiryReport, older_than: int, deadline: float | None
    ) -> None:
        listing = self._objects.multipart_uploads(keys.BLOB_OBJECTS)
        for upload in self._guarded(report, "list of multipart uploads", listing, deadline):
            if upload.initiated > older_than:
                continue
            upload_id = keys.upload_of_blob_object(upload.key)
            if upload_id is None:
                continue  # no upload's key (keys.py): not the sweep's to judge
            try:
                if self._sessions.exists(upload_id):
                    report.kept += 1
                    continue
                # Its age is that of its newest activity: a part sent within the grace
                # period (a direct upload's client, a request mid-way) keeps it.
                size, newest_part = self._objects.multipart_parts(upload.key, upload.multipart_id)
                if newest_part > older_than:
                    continue
                if not report.dry_run:
                    self._objects.abort_multipart(upload.key, upload.multipart_id)
            except StorageUnavailable as error:
                report.record_error(f"multipart upload {upload.key}", error)
                continue
            report.count(Leftover(MULTIPART, upload.key, size))

    # --- pass 3 ---------------------------------------------------------------------------

    def _orphan_tails(self, report: ExpiryReport, older_than: int, deadline: float | None) -> None:
        listing = self._objects.objects(keys.UPLOAD_TAILS)
        # Tails are listed in key order, so those of one upload come together: its
        # session is read once for all of them.
        known: tuple[str | None, bool] = (None, False)
        for found in self._guarded(report, "list of upload tails", listing, deadline):
            if found.modified > older_than:
                continue
            upload_id = keys.upload_of_tail_object(found.key)
            if upload_id is None:
                continue  # no tail's key (keys.py): the lifecycle rule's, not the sweep's
            try:
                if known[0] != upload_id:
                    known = (upload_id, self._sessions.exists(upload_id))
                if known[1]:
                    report.kept += 1
                    continue
                if not report.dry_run:
                    self._objects.delete(found.key)
            except StorageUnavailable as error:
                report.record_error(f"tail {found.key}", error)
                continue
            report.count(Leftover(TAIL, found.key, found.size))
