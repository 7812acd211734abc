"""The small interfaces the services need from storage, and the records they exchange.

Adapters (``s3.py``, the ``dynamodb`` package) translate their SDK's errors into the
exceptions named here; services translate those into OCI errors. Any method
may also raise :class:`StorageUnavailable` when the backend throttles or fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# --- records ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobRecord:
    digest: str
    size: int
    key: str  # S3 key of the bytes


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    body: bytes | None = None  # inline body; None when it lives at body_key
    body_key: str | None = None
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Referrer:
    """A descriptor as the referrers API lists it (distribution-spec "Listing Referrers")."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    # Annotations too big for a DynamoDB item stay in the manifest body only.
    annotations_in_body: bool = False


@dataclass(slots=True)
class UploadSession:
    upload_id: str
    repository: str
    blob_key: str
    offset: int = 0  # bytes received so far
    hash_algorithm: str = "sha256"
    hash_state: bytes = b""
    multipart_id: str | None = None
    part_etags: list[str] = field(default_factory=list)  # parts 1..n, in order
    # The bytes after the last part of at least 5 MiB ("tail"), tail_size of them: in the
    # object tail_key, or, when tail_key is None, uploaded as a short last part (the last
    # of part_etags; see short_last_part). tail_size 0: no such bytes.
    tail_key: str | None = None
    tail_size: int = 0
    expires_at: int = 0
    # The identity that started the upload (auth on): nobody else may use the session.
    owner: str | None = None
    # The count of open sessions this one is counted in (UploadSessions.create's cap):
    # its owner's, or with auth off its repository's; None: counted in none.
    quota: str | None = None
    # A direct upload (skyport.direct_uploads: the client sends parts straight to S3 by
    # presigned URLs): the digest and size it announced, and where it stands,
    # "uploading" then "verifying". None: a chunked upload through the registry.
    direct_digest: str | None = None
    direct_size: int = 0
    direct_state: str | None = None

    @property
    def short_last_part(self) -> bool:
        """The last part (number len(part_etags), tail_size bytes) is under S3's minimum
        part size: valid only while it stays last (storage/multipart.py, "short last part")."""
        return self.tail_size > 0 and self.tail_key is None and self.multipart_id is not None


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """A user or robot account as stored (access.Identity is what requests see)."""

    name: str
    kind: str  # user | robot
    password_hash: str
    admin: bool = False
    groups: tuple[str, ...] = ()
    generation: int = 1
    created_at: int = 0
    # New for each creation: tokens carry it, so an identity deleted and re-created
    # under the same name (its generation starting over) never honours old tokens.
    identity_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Lockout:
    """Failed logins of one identity from one source address."""

    failures: int = 0
    window_start: int = 0
    locked_until: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    has_more: bool
    # Where the next page starts (after this name), when not after the last item: a
    # listing that stopped at its work cap past names it did not show (catalog.py).
    resume_after: str | None = None

    @property
    def next_after(self) -> str | None:
        """The ``last`` of the next page's request; None when there is none."""
        if not self.has_more:
            return None
        return self.resume_after if self.resume_after is not None else self.items[-1]


# --- exceptions -------------------------------------------------------------


class StorageError(Exception):
    pass


class StorageUnavailable(StorageError):
    """Throttled, timed out or a 5xx: the request may be retried."""


class ObjectMissing(StorageError):
    """An S3 key that should exist does not."""


class UploadMissing(StorageError):
    """No upload session with that id (never created, finished, cancelled or expired)."""


class UploadConflict(StorageError):
    """The session is not in the state the writer expected (offset moved or leased)."""

    def __init__(self, current: UploadSession | None, *, busy: bool = False) -> None:
        super().__init__("upload session conflict")
        self.current = current
        self.busy = busy


class TooManyUploads(StorageError):
    """As many upload sessions as allowed are open in the new one's quota."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} upload sessions open")
        self.limit = limit


class MissingReferences(StorageError):
    """A manifest references blobs or manifests the repository does not hold."""

    def __init__(self, blobs: Sequence[str], manifests: Sequence[str]) -> None:
        super().__init__("missing references")
        self.blobs = list(blobs)
        self.manifests = list(manifests)


class TagImmutable(StorageError):
    """A write or delete would move or remove an immutable tag (skyport/immutability.py):
    ``tag`` names another manifest than the push's (``current``: its digest when known),
    or names the manifest being deleted. Nothing was written."""

    def __init__(self, tag: str, current: str | None = None) -> None:
        super().__init__(f"tag {tag} is immutable")
        self.tag = tag
        self.current = current


# --- interfaces -------------------------------------------------------------


class ObjectStore(Protocol):
    """Blob bytes in S3. Raises ObjectMissing for absent keys.

    S3 answers 403 AccessDenied, not 404, for an absent key to a role without
    s3:ListBucket (the deployed one). Where a key can legitimately be absent (an
    upload's tail object, the fold's staging object), that 403 is ObjectMissing
    too: ``read(..., may_be_missing=True)``, ``copy`` and ``copy_part`` (whose
    sources are only ever those), and ``stream`` (a blob deleted after its index
    entry was read). Elsewhere it stays StorageUnavailable."""

    def presign_get(self, key: str, expires_in: int) -> str: ...
    def read(self, key: str, *, may_be_missing: bool = False) -> bytes: ...
    def stream(self, key: str) -> Iterator[bytes]:
        """Raises ObjectMissing when called, not at the first chunk."""

    def put(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def copy(self, source_key: str, key: str) -> None:
        """Server-side copy of a whole object (at most 5 GiB)."""
        ...

    def start_multipart(self, key: str) -> str: ...
    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str: ...
    def copy_part(
        self,
        key: str,
        multipart_id: str,
        number: int,
        source_key: str,
        first: int | None = None,
        last: int | None = None,
    ) -> str:
        """Part ``number`` copied server-side from ``source_key``: bytes first..last
        (inclusive), or the whole object; at most 5 GiB. Returns its ETag. ObjectMissing
        when the multipart upload or the source is gone."""
        ...

    def complete_multipart(self, key: str, multipart_id: str, etags: Sequence[str]) -> None:
        """ObjectMissing when S3 no longer has the multipart upload (aborted, or completed
        and its object since replaced; completing it again while the object it made is
        still there succeeds)."""
        ...

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Idempotent: an upload already gone is not an error."""
        ...


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """A part S3 holds for a multipart upload (ListParts)."""

    number: int
    size: int
    etag: str


class DirectObjectStore(ObjectStore, Protocol):
    """What direct uploads (parts sent by the client to presigned URLs) need beyond
    ObjectStore. ObjectMissing when the multipart upload or the object is gone."""

    def presign_upload_part(self, key: str, multipart_id: str, number: int, expires_in: int) -> str: ...
    def list_parts(self, key: str, multipart_id: str) -> list[UploadedPart]: ...
    def size_of(self, key: str) -> int: ...
    def read_range(self, key: str, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive) of the object."""
        ...


class BlobIndex(Protocol):
    """Which blobs exist, and in which repositories they are visible."""

    def get_link(self, repository: str, digest: str) -> BlobRecord | None: ...
    def get_blob(self, digest: str) -> BlobRecord | None: ...
    def add_blob(self, record: BlobRecord) -> BlobRecord:
        """Record a blob unless one is recorded already; return the one that is (stamped
        as used now, so that the garbage collector keeps it)."""
        ...

    def touch_blob(self, digest: str) -> BlobRecord | None:
        """Stamp the recorded blob as used now; None when no blob is recorded (never, or
        no longer: the garbage collector removed it)."""
        ...

    def link(self, repository: str, record: BlobRecord) -> None: ...
    def unlink(self, repository: str, digest: str) -> bool:
        """False when there was no link."""
        ...


class UploadSessions(Protocol):
    """Upload sessions, written only under a lease taken by ``claim``."""

    def create(self, session: UploadSession, max_open: int = 0, now: int = 0) -> None:
        """Store a new session. With ``session.quota`` and ``max_open``, only while fewer
        than ``max_open`` sessions of that quota are open (stored, and expiring after
        ``now``); else TooManyUploads, and nothing is stored."""
        ...

    def get(self, upload_id: str) -> UploadSession | None: ...
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
        """Lease the session for one request. Raises UploadMissing (also when ``owner`` is
        given and the session is someone else's), or UploadConflict when it is leased by
        another request or not at ``expected_offset``."""
        ...

    def save(self, session: UploadSession, token: str) -> None:
        """Store the new state and drop the lease. Raises UploadConflict if the lease was lost."""
        ...

    def release(self, upload_id: str, token: str) -> None:
        """Drop the lease, keeping the stored state (the request failed)."""
        ...

    def delete(
        self, upload_id: str, repository: str, token: str | None = None, owner: str | None = None
    ) -> UploadSession:
        """Remove the session (held under ``token``, owned by ``owner``, when given),
        which then no longer counts in its quota. Raises UploadMissing."""
        ...


# --- abandoned uploads (issue 12: skyport/upload_expiry.py) --------------------------


@dataclass(frozen=True, slots=True)
class PendingMultipart:
    """A multipart upload S3 holds in progress (ListMultipartUploads)."""

    key: str
    multipart_id: str
    initiated: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ListedObject:
    """An object under a prefix (ListObjectsV2)."""

    key: str
    size: int
    modified: float  # epoch seconds


class UploadLeftovers(Protocol):
    """What the upload expiry sweep reads of S3 beyond ObjectStore: listings, paged by S3
    (1,000 a page), yielded one at a time so nothing is held whole."""

    def multipart_uploads(self, prefix: str) -> Iterator[PendingMultipart]: ...
    def objects(self, prefix: str) -> Iterator[ListedObject]: ...
    def multipart_parts(self, key: str, multipart_id: str) -> tuple[int, float]:
        """(bytes of the parts S3 holds for the upload, when the newest was uploaded,
        epoch seconds; 0 without parts); (0, 0) when the upload is gone."""
        ...


class ExpiringSessions(Protocol):
    """Upload sessions as the expiry sweep sees them (storage/dynamodb/upload_expiry.py)."""

    def expired(self, cutoff: int, page_size: int) -> Iterator[UploadSession]:
        """Sessions whose expires_at is at or before ``cutoff``: a paged Scan with a
        filter, ``page_size`` items examined a call, never the whole table in memory."""
        ...

    def expire(self, session: UploadSession, cutoff: int, now: int) -> UploadSession | None:
        """Remove ``session`` (and its entry in its quota) if it is still expired at
        ``cutoff`` and no request holds a lease on it at ``now``: the session as it was
        removed; None, nothing removed, otherwise."""
        ...

    def exists(self, upload_id: str) -> bool:
        """Whether a session of that id is stored (a strongly consistent read)."""
        ...


# --- usage (issue 12: skyport/usage.py) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoryItem:
    """One item of a repository's partition as usage counts it: a blob link, a manifest,
    a tag or a last-pull record (kind), with the digest it names (tags: none), its size
    (links and manifests) and when it was written or pulled (epoch ms; 0: unknown)."""

    kind: str  # blob | manifest | tag | pull
    digest: str
    size: int = 0
    at_ms: int = 0


class UsageIndex(Protocol):
    def repository_items(self, repository: str) -> Iterator[RepositoryItem]:
        """Every blob link, manifest, tag and last-pull record of the repository: one
        paged Query of its partition, yielded one item at a time."""
        ...


class ManifestIndex(Protocol):
    """Manifests, tags, referrers and the catalog of one registry."""

    def get_manifest(self, repository: str, digest: str) -> ManifestRecord | None: ...
    def get_tag(self, repository: str, tag: str) -> ManifestRecord | None: ...
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
        """Store atomically with its tag, catalog entry and referrer entry, provided every
        blob (digest -> size) and child manifest is in the repository; else MissingReferences.
        With ``immutable_tag``, also provided the tag is absent or already names this
        digest; else TagImmutable."""
        ...

    def check_references(
        self, repository: str, digest: str, blobs: dict[str, int], manifests: Sequence[str]
    ) -> None:
        """MissingReferences unless every blob (at its size) and child manifest (other
        than ``digest`` itself) is in the repository; by reads, not atomic with any write."""
        ...

    def delete_manifest(
        self,
        repository: str,
        digest: str,
        keep_tag: Callable[[str], bool] | None = None,
        pushed_ms: int | None = None,
    ) -> ManifestRecord | None:
        """Remove the manifest, the tags naming it and its last-pull record; None when there
        is none. With ``keep_tag``: TagImmutable, and nothing removed, when it is true of
        such a tag. With ``pushed_ms``: None, and nothing removed, unless the manifest was
        last pushed then (0: it carries no push time), i.e. no push named it since
        (retention's evaluation)."""
        ...

    def delete_tag(self, repository: str, tag: str) -> bool: ...
    def forget_repository_if_empty(self, repository: str) -> bool:
        """Drop the repository from the catalog if it holds no manifest; True if dropped."""
        ...

    def list_tags(self, repository: str, limit: int, after: str | None) -> Page: ...
    def tagged(self, repository: str) -> Iterator[tuple[str, ManifestRecord]]:
        """Every tag of the repository with the manifest it names (paged reads)."""
        ...

    def list_referrers(self, repository: str, subject: str) -> list[Referrer]: ...
    def repository_exists(self, repository: str) -> bool: ...
    def list_repositories(self, limit: int, after: str | None) -> Page: ...


class AuthStore(Protocol):
    """Identities, grants and (local stacks only) token signing keys."""

    def get_identity(self, name: str) -> IdentityRecord | None: ...
    def create_identity(self, record: IdentityRecord) -> bool:
        """False when an identity of that name exists."""
        ...

    def update_identity(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        admin: bool | None = None,
        groups: Sequence[str] | None = None,
    ) -> bool:
        """A new password hash also bumps the generation. False when there is no such identity."""
        ...

    def delete_identity(self, name: str) -> bool: ...
    def list_identities(self) -> list[IdentityRecord]: ...
    def get_lockout(self, name: str, source: str) -> Lockout | None: ...
    def record_failed_login(
        self, name: str, source: str, now: int, threshold: int, max_lock_seconds: int, window: int
    ) -> None:
        """Count a failure of ``name`` from ``source`` (failures before ``now - window``
        no longer count); from ``threshold`` failures on, lock for a doubling time. The
        record expires (TTL) once neither its window nor its lock matters."""
        ...

    def clear_failed_logins(self, name: str, source: str | None = None) -> None:
        """Forget the failures of ``name`` from ``source`` (None: from everywhere)."""
        ...

    def list_grants(self) -> list[tuple[str, str, frozenset[str]]]:
        """(pattern, principal, actions) of every grant."""
        ...

    def put_grant(self, pattern: str, principal: str, actions: frozenset[str]) -> None: ...
    def delete_grant(self, pattern: str, principal: str) -> bool: ...
    def get_signing_keys(self) -> tuple[bytes, bytes | None] | None: ...
    def put_signing_keys(self, current: bytes, previous: bytes | None, replacing: bytes | None) -> bool:
        """Store the keys if the current key is still ``replacing`` (None: no keys yet)."""
        ...

    def bootstrap_admin(self, record: IdentityRecord) -> bool:
        """Create the first admin, once in the registry's life; False if done before."""
        ...


# --- replication (issue 11; skyport.replication) -----------------------------------


@dataclass(frozen=True, slots=True)
class ReplicationRule:
    """A replication rule (skyport.replication.rules says what each field means)."""

    id: str
    repositories: str  # the repository pattern
    destination: str  # the destination URL: never carries a secret
    tags: str | None = None  # the tag pattern; None: every tag and untagged manifests too
    deletes: bool = False
    insecure: bool = False
    credentials: bool = False  # a secret at settings.hook_secrets + "replication/<id>"
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class ReplicationStatus:
    """What a rule last did: epoch seconds (0: never), the last error's reason (no
    secrets), the lag of the last event applied (event time to applied, seconds)."""

    last_success_at: int = 0
    last_error_at: int = 0
    last_error: str = ""
    lag_seconds: float | None = None
    applied: int = 0  # events applied since the rule was made


class ReplicationStore(Protocol):
    """Rules, their status, and the per-(rule, ordering key) guard."""

    def add_rule(self, rule: ReplicationRule) -> bool:
        """False when a rule with that id exists."""
        ...

    def get_rule(self, rule_id: str) -> tuple[ReplicationRule, ReplicationStatus] | None: ...
    def list_rules(self) -> list[tuple[ReplicationRule, ReplicationStatus]]: ...
    def remove_rule(self, rule_id: str) -> bool:
        """False when there was no such rule."""
        ...

    def record_success(self, rule_id: str, at: int, lag_seconds: float | None) -> None:
        """Nothing when the rule is gone meanwhile (no status without its rule)."""
        ...

    def record_error(self, rule_id: str, at: int, reason: str) -> None: ...
    def applied_sequence(self, rule_id: str, ordering_key: str) -> int | None:
        """The newest sequence number the rule applied for ``ordering_key``, if any."""
        ...

    def record_applied(self, rule_id: str, ordering_key: str, sequence_number: int, expires_at: int) -> bool:
        """Record ``sequence_number`` as applied; False (nothing written) when a newer or
        equal one is recorded already."""
        ...
