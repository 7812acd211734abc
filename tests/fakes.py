"""In-memory storage ports (ObjectStore, BlobIndex, UploadSessions, ManifestIndex, AuthStore) that
fail on demand, for tests that drive a core service directly.

They keep the contract of the S3 and DynamoDB adapters (``tests/unit/test_storage_contract.py``
runs one behaviour suite against both), not their cost. Every call goes through a
:class:`FaultPlan`, shared by the fakes of one test, which records it and may fail it::

    plan = FaultPlan()
    plan.fail("upload_part", nth=2)                  # the 2nd upload_part: StorageUnavailable
    plan.fail("UploadSessions.save", kind="timeout")  # saved, but the caller hears an error
    plan.fail(nth=7, kind="throttle")                # the 7th call of any method
    plan.crash(nth=5)                                # the 5th call and every one after it fail
    store = MemoryStorage(plan)                      # .objects, .blobs, .sessions, .manifests

Kinds: ``"error"`` and ``"throttle"`` fail before the call has any effect (as the
adapters report a 5xx or a throttle: StorageUnavailable); ``"timeout"`` fails after it
took effect (the answer was lost on the way back); any exception instance is raised as is,
before the effect. A method is named ``"name"`` or ``"Port.name"`` (``"ObjectStore.delete"``);
None matches every method. ``nth`` counts the calls that match, from 1.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skyport.storage.ports import (
    BlobRecord,
    IdentityRecord,
    Lockout,
    ManifestRecord,
    MissingReferences,
    ObjectMissing,
    Page,
    Referrer,
    StorageUnavailable,
    TagImmutable,
    TooManyUploads,
    UploadConflict,
    UploadMissing,
    UploadSession,
)

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB


class InjectedFault(StorageUnavailable):
    """What a fault of kind "error", "throttle" or "timeout" raises."""


@dataclass
class Fault:
    method: str | None
    nth: int
    kind: str | BaseException = "error"
    # A crash: this call and every later call (of any method) fail.
    forever: bool = False
    seen: int = 0

    def matches(self, port: str, method: str) -> bool:
        return self.method is None or self.method in (method, f"{port}.{method}")


@dataclass
class FaultPlan:
    """Which calls fail, and the log of every call made (``calls``: "Port.method")."""

    faults: list[Fault] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    _crashed: bool = False
    # The services call storage from several threads (a part uploads while the next fills).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(
        self, method: str | None = None, *, nth: int = 1, kind: str | BaseException = "error"
    ) -> FaultPlan:
        self.faults.append(Fault(method, nth, kind))
        return self

    def crash(self, method: str | None = None, *, nth: int = 1) -> FaultPlan:
        """The process dies at that call: it and every later one fail, no effect."""
        self.faults.append(Fault(method, nth, "error", forever=True))
        return self

    def clear(self) -> None:
        self.faults.clear()
        self._crashed = False

    def count(self, method: str | None = None) -> int:
        return sum(1 for call in self.calls if method is None or method in (call, call.split(".", 1)[1]))

    def call(self, port: str, method: str, fn: Callable[[], Any]) -> Any:
        name = f"{port}.{method}"
        with self._lock:
            self.calls.append(name)
            fault = None
            for candidate in self.faults:
                if candidate.matches(port, method):
                    candidate.seen += 1
                    if candidate.seen == candidate.nth and fault is None:
                        fault = candidate
            if self._crashed or (fault is not None and fault.forever):
                self._crashed = True
                self.injected.append(f"{name}: crash")
                raise InjectedFault(f"{name}: the process is gone")
            if fault is not None:
                self.injected.append(f"{name}: {fault.kind}")
        if fault is None:
            return fn()
        if isinstance(fault.kind, BaseException):
            raise fault.kind
        if fault.kind == "timeout":
            fn()
            raise InjectedFault(f"{name}: timed out (it took effect)")
        if fault.kind in ("error", "throttle"):
            raise InjectedFault(f"{name}: injected {fault.kind}")
        raise ValueError(f"unknown fault kind {fault.kind!r}")


def _through_plan(port: str) -> Callable[[type], type]:
    """Route every public method of the class through ``self.plan``."""

    def decorate(cls: type) -> type:
        for name, fn in list(vars(cls).items()):
            if name.startswith("_") or not callable(fn):
                continue

            def wrapper(self, *args, _fn=fn, _name=name, **kwargs):
                return self.plan.call(port, _name, lambda: _fn(self, *args, **kwargs))

            functools.update_wrapper(wrapper, fn)
            setattr(cls, name, wrapper)
        return cls

    return decorate


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324 - S3's ETag, not security


@dataclass
class _Multipart:
    key: str
    parts: dict[int, bytes] = field(default_factory=dict)


@_through_plan("ObjectStore")
class MemoryObjectStore:
    """S3 in a dict. Multipart uploads follow S3's rules: every part but the last at
    least ``min_part`` bytes, parts named by ETag at completion, an upload completed
    again while the object it made is still there succeeds, NoSuchUpload otherwise."""

    def __init__(self, plan: FaultPlan, min_part: int = S3_MIN_PART) -> None:
        self.plan = plan
        self.min_part = min_part
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, _Multipart] = {}
        self._completed: dict[str, tuple[str, bytes]] = {}  # id -> (key, the object it made)
        self._ids = 0

    def presign_get(self, key: str, expires_in: int) -> str:
        return f"memory://{key}?expires={expires_in}"

    def _get(self, key: str) -> bytes:
        # Internal reads do not go through the fault plan: one call, one fault chance.
        if key not in self.objects:
            raise ObjectMissing(key)
        return self.objects[key]

    def read(self, key: str, *, may_be_missing: bool = False) -> bytes:
        return self._get(key)

    def stream(self, key: str) -> Iterator[bytes]:
        data = self._get(key)
        return iter([data[i : i + MiB] for i in range(0, len(data), MiB)] or [b""])

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def copy(self, source_key: str, key: str) -> None:
        self.objects[key] = self._get(source_key)

    def start_multipart(self, key: str) -> str:
        self._ids += 1
        multipart_id = f"mpu-{self._ids}"
        self.uploads[multipart_id] = _Multipart(key)
        return multipart_id

    def _upload(self, key: str, multipart_id: str) -> _Multipart:
        upload = self.uploads.get(multipart_id)
        if upload is None or upload.key != key:
            raise ObjectMissing(key)  # NoSuchUpload
        return upload

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        self._upload(key, multipart_id).parts[number] = bytes(data)
        return _etag(data)

    def copy_part(
        self,
        key: str,
        multipart_id: str,
        number: int,
        source_key: str,
        first: int | None = None,
        last: int | None = None,
    ) -> str:
        upload = self._upload(key, multipart_id)
        data = self._get(source_key)
        if first is not None:
            data = data[first : (last or 0) + 1]
        upload.parts[number] = data
        return _etag(data)

    def complete_multipart(self, key: str, multipart_id: str, etags: Sequence[str]) -> None:
        done = self._completed.get(multipart_id)
        if done is not None and multipart_id not in self.uploads:
            if done[0] == key and self.objects.get(key) is done[1]:
                return
            raise ObjectMissing(key)
        upload = self._upload(key, multipart_id)
        numbers = list(range(1, len(etags) + 1))
        if any(
            n not in upload.parts or _etag(upload.parts[n]) != etag
            for n, etag in zip(numbers, etags, strict=True)
        ):
            raise ValueError("InvalidPart: an ETag does not name an uploaded part")
        if any(len(upload.parts[n]) < self.min_part for n in numbers[:-1]):
            raise ValueError("EntityTooSmall: a part but the last is under the minimum")
        data = b"".join(upload.parts[n] for n in numbers)
        self.objects[key] = data
        self._completed[multipart_id] = (key, data)
        del self.uploads[multipart_id]

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        upload = self.uploads.get(multipart_id)
        if upload is not None and upload.key == key:
            del self.uploads[multipart_id]


@_through_plan("BlobIndex")
class MemoryBlobIndex:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.blobs: dict[str, BlobRecord] = {}
        self.links: dict[tuple[str, str], BlobRecord] = {}

    def get_link(self, repository: str, digest: str) -> BlobRecord | None:
        return self.links.get((repository, digest))

    def get_blob(self, digest: str) -> BlobRecord | None:
        return self.blobs.get(digest)

    def add_blob(self, record: BlobRecord) -> BlobRecord:
        return self.blobs.setdefault(record.digest, record)

    def touch_blob(self, digest: str) -> BlobRecord | None:
        return self.blobs.get(digest)

    def link(self, repository: str, record: BlobRecord) -> None:
        self.links[(repository, record.digest)] = record

    def unlink(self, repository: str, digest: str) -> bool:
        return self.links.pop((repository, digest), None) is not None


@dataclass
class _Stored:
    session: UploadSession
    lease_token: str | None = None
    lease_until: int = 0


@_through_plan("UploadSessions")
class MemoryUploadSessions:
    """The lease and offset conditions of ``storage/dynamodb/uploads.py``, on a dict."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.items: dict[str, _Stored] = {}
        self.counted: set[str] = set()  # sessions created under a cap: they count in their quota

    def create(self, session: UploadSession, max_open: int = 0, now: int = 0) -> None:
        if session.upload_id in self.items:
            raise ValueError("UPLOAD_IS_NEW failed: an upload id is never reused")
        if session.quota is not None and max_open:
            if (
                sum(
                    1
                    for upload_id, stored in self.items.items()
                    if upload_id in self.counted
                    and stored.session.quota == session.quota
                    and stored.session.expires_at > now
                )
                >= max_open
            ):
                raise TooManyUploads(max_open)
            self.counted.add(session.upload_id)
        self.items[session.upload_id] = _Stored(copy.deepcopy(session))

    def get(self, upload_id: str) -> UploadSession | None:
        stored = self.items.get(upload_id)
        return copy.deepcopy(stored.session) if stored else None

    def claim(
        self,
        upload_id: str,
        repository: str,
        token: str,
        now: int,
        lease_until: int,
        expected_offset: int | None,
        owner: str | None = None,
    ) -> UploadSession:
        stored = self.items.get(upload_id)
        if (
            stored is None
            or stored.session.repository != repository
            or stored.session.expires_at <= now
            or (owner is not None and stored.session.owner != owner)
        ):
            raise UploadMissing(upload_id)
        busy = stored.lease_token is not None and stored.lease_until >= now
        if busy or (expected_offset is not None and stored.session.offset != expected_offset):
            raise UploadConflict(copy.deepcopy(stored.session), busy=busy)
        stored.lease_token, stored.lease_until = token, lease_until
        return copy.deepcopy(stored.session)

    def save(self, session: UploadSession, token: str) -> None:
        stored = self.items.get(session.upload_id)
        if stored is None or stored.lease_token != token:
            raise UploadConflict(None)
        # As the table's put: the new item carries no lease.
        self.items[session.upload_id] = _Stored(copy.deepcopy(session))

    def release(self, upload_id: str, token: str) -> None:
        stored = self.items.get(upload_id)
        if stored is not None and stored.lease_token == token:
            stored.lease_token, stored.lease_until = None, 0

    def delete(
        self, upload_id: str, repository: str, token: str | None = None, owner: str | None = None
    ) -> UploadSession:
        stored = self.items.get(upload_id)
        if (
            stored is None
            or stored.session.repository != repository
            or (owner is not None and stored.session.owner != owner)
            or (token is not None and stored.lease_token != token)
        ):
            raise UploadMissing(upload_id)
        del self.items[upload_id]
        self.counted.discard(upload_id)
        return copy.deepcopy(stored.session)


@_through_plan("ManifestIndex")
class MemoryManifestIndex:
    def __init__(self, plan: FaultPlan, blobs: MemoryBlobIndex) -> None:
        self.plan = plan
        self._blobs = blobs
        self.manifests: dict[tuple[str, str], ManifestRecord] = {}
        self.tags: dict[tuple[str, str], ManifestRecord] = {}
        self.referrers: dict[tuple[str, str, str], ManifestRecord] = {}
        self.repositories: set[str] = set()
        # When each manifest was last pushed (the table's pushed_ms), for delete_manifest.
        self.pushed_ms: dict[tuple[str, str], int] = {}

    def get_manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        return self.manifests.get((repository, digest))

    def get_tag(self, repository: str, tag: str) -> ManifestRecord | None:
        return self.tags.get((repository, tag))

    def _check(self, repository: str, digest: str, blobs: dict[str, int], manifests: Sequence[str]) -> None:
        missing_blobs = [
            d
            for d, size in blobs.items()
            if (link := self._blobs.links.get((repository, d))) is None or link.size != size
        ]
        missing_manifests = [
            d for d in dict.fromkeys(manifests) if d != digest and (repository, d) not in self.manifests
        ]
        if missing_blobs or missing_manifests:
            raise MissingReferences(missing_blobs, missing_manifests)

    def check_references(
        self, repository: str, digest: str, blobs: dict[str, int], manifests: Sequence[str]
    ) -> None:
        self._check(repository, digest, blobs, manifests)

    def put_manifest(
        self,
        repository: str,
        record: ManifestRecord,
        tag: str | None,
        blobs: dict[str, int],
        manifests: Sequence[str],
        referrer_of: str | None,
        immutable_tag: bool = False,
    ) -> None:
        if tag is not None and immutable_tag:
            # TAG_NEW_OR_SAME_DIGEST: the tag is absent or already names this digest.
            current = self.tags.get((repository, tag))
            if current is not None and current.digest != record.digest:
                raise TagImmutable(tag, current.digest)
        self._check(repository, record.digest, blobs, manifests)
        self.manifests[(repository, record.digest)] = record
        self.pushed_ms[(repository, record.digest)] = time.time_ns() // 1_000_000
        self.repositories.add(repository)
        if tag is not None:
            self.tags[(repository, tag)] = record
        if referrer_of is not None:
            self.referrers[(repository, referrer_of, record.digest)] = record

    def delete_manifest(
        self,
        repository: str,
        digest: str,
        keep_tag: Callable[[str], bool] | None = None,
        pushed_ms: int | None = None,
    ) -> ManifestRecord | None:
        if (repository, digest) not in self.manifests:
            return None
        if pushed_ms is not None and self.pushed_ms.get((repository, digest), 0) != pushed_ms:
            return None  # MANIFEST_UNCHANGED_SINCE: pushed again since
        for (repo, tag), tagged in self.tags.items():
            if repo == repository and tagged.digest == digest and keep_tag is not None and keep_tag(tag):
                raise TagImmutable(tag, digest)
        record = self.manifests.pop((repository, digest))
        if record.subject:
            self.referrers.pop((repository, record.subject, digest), None)
        for key in [k for k, v in self.tags.items() if k[0] == repository and v.digest == digest]:
            del self.tags[key]
        return record

    def forget_repository_if_empty(self, repository: str) -> bool:
        if repository not in self.repositories or any(r == repository for r, _ in self.manifests):
            return False
        self.repositories.discard(repository)
        return True

    def delete_tag(self, repository: str, tag: str) -> bool:
        return self.tags.pop((repository, tag), None) is not None

    @staticmethod
    def _page(names: list[str], limit: int, after: str | None) -> Page:
        # Bytewise order, as DynamoDB compares sort keys.
        names = sorted((n for n in names if after is None or n.encode() > after.encode()), key=str.encode)
        return Page(names[:limit], has_more=len(names) > limit)

    def list_tags(self, repository: str, limit: int, after: str | None) -> Page:
        return self._page([t for r, t in self.tags if r == repository], limit, after)

    def tagged(self, repository: str) -> Iterator[tuple[str, ManifestRecord]]:
        yield from sorted((t, r) for (repo, t), r in self.tags.items() if repo == repository)

    def list_referrers(self, repository: str, subject: str) -> list[Referrer]:
        return [
            Referrer(r.digest, r.media_type, r.size, r.artifact_type, r.annotations)
            for (repo, subj, _), r in sorted(self.referrers.items())
            if (repo, subj) == (repository, subject)
        ]

    def repository_exists(self, repository: str) -> bool:
        return repository in self.repositories

    def list_repositories(self, limit: int, after: str | None) -> Page:
        return self._page(list(self.repositories), limit, after)


@_through_plan("AuthStore")
class MemoryAuthStore:
    """The conditions of ``storage/dynamodb/identities.py``, on dicts."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.identities: dict[str, IdentityRecord] = {}
        self.grants: dict[tuple[str, str], frozenset[str]] = {}
        self.lockouts: dict[tuple[str, str], Lockout] = {}
        self.signing_keys: tuple[bytes, bytes | None] | None = None
        self.bootstrapped = False

    def get_identity(self, name: str) -> IdentityRecord | None:
        return self.identities.get(name)

    def create_identity(self, record: IdentityRecord) -> bool:
        if record.name in self.identities:
            return False
        self.identities[record.name] = record
        return True

    def update_identity(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        admin: bool | None = None,
        groups: Sequence[str] | None = None,
    ) -> bool:
        record = self.identities.get(name)
        if record is None:
            return False
        if password_hash is not None:
            record = replace(record, password_hash=password_hash, generation=record.generation + 1)
        if admin is not None:
            record = replace(record, admin=admin)
        if groups is not None:
            record = replace(record, groups=tuple(groups))
        self.identities[name] = record
        return True

    def delete_identity(self, name: str) -> bool:
        return self.identities.pop(name, None) is not None

    def list_identities(self) -> list[IdentityRecord]:
        return [self.identities[name] for name in sorted(self.identities, key=str.encode)]

    def get_lockout(self, name: str, source: str) -> Lockout | None:
        return self.lockouts.get((name, source))

    def record_failed_login(
        self, name: str, source: str, now: int, threshold: int, max_lock_seconds: int, window: int
    ) -> None:
        lock = self.lockouts.get((name, source))
        if lock is None or lock.window_start < now - window:
            lock = Lockout(0, now, 0)
        lock = replace(lock, failures=lock.failures + 1)
        if lock.failures >= threshold:
            lock = replace(
                lock, locked_until=now + min(2 ** min(lock.failures - threshold, 30), max_lock_seconds)
            )
        self.lockouts[(name, source)] = lock

    def clear_failed_logins(self, name: str, source: str | None = None) -> None:
        for key in [k for k in self.lockouts if k[0] == name and source in (None, k[1])]:
            del self.lockouts[key]

    def list_grants(self) -> list[tuple[str, str, frozenset[str]]]:
        return [
            (pattern, principal, actions) for (pattern, principal), actions in sorted(self.grants.items())
        ]

    def put_grant(self, pattern: str, principal: str, actions: frozenset[str]) -> None:
        self.grants[(pattern, principal)] = frozenset(actions)

    def delete_grant(self, pattern: str, principal: str) -> bool:
        return self.grants.pop((pattern, principal), None) is not None

    def get_signing_keys(self) -> tuple[bytes, bytes | None] | None:
        return self.signing_keys

    def put_signing_keys(self, current: bytes, previous: bytes | None, replacing: bytes | None) -> bool:
        stored = self.signing_keys[0] if self.signing_keys else None
        if stored != replacing:
            return False
        self.signing_keys = (current, previous)
        return True

    def bootstrap_admin(self, record: IdentityRecord) -> bool:
        if self.bootstrapped or record.name in self.identities:
            return False
        self.bootstrapped = True
        self.identities[record.name] = record
        return True


@dataclass
class FaultTally:
    """What a fault suite ran, for the line it prints at the end (issue 9: the counts)."""

    label: str
    operations: int = 0  # operations run with a fault armed
    faults: int = 0  # calls failed by the plan (a crash fails every call after it)
    lost_or_corrupt: int = 0  # cases where an image or a blob was lost or served corrupt

    def line(self) -> str:
        return (
            f"{self.label}: {self.operations} operations, {self.faults} faults injected, "
            f"{self.lost_or_corrupt} images lost or corrupt"
        )

    def print(self, config: Any) -> None:
        """Print the line past pytest's output capture, so it shows in every run."""
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            print(self.line())
            return
        with capture.global_and_fixture_disabled():
            print("\n" + self.line())


class MemoryStorage:
    """One registry's storage in memory, every port sharing one fault plan."""

    def __init__(self, plan: FaultPlan | None = None, min_part: int = S3_MIN_PART) -> None:
        self.plan = plan or FaultPlan()
        self.objects = MemoryObjectStore(self.plan, min_part)
        self.blobs = MemoryBlobIndex(self.plan)
        self.sessions = MemoryUploadSessions(self.plan)
        self.manifests = MemoryManifestIndex(self.plan, self.blobs)
        self.auth = MemoryAuthStore(self.plan)

    def snapshot(self) -> dict:
        """Everything stored, leases included, to compare before and after."""
        return copy.deepcopy(
            {
                "objects": dict(self.objects.objects),
                "multipart_uploads": {i: (u.key, dict(u.parts)) for i, u in self.objects.uploads.items()},
                "sessions": {i: (s.session, s.lease_token) for i, s in self.sessions.items.items()},
                "blobs": dict(self.blobs.blobs),
                "links": dict(self.blobs.links),
            }
        )
