"""Direct uploads: the client sends a blob's bytes straight to S3, in parallel parts, by
presigned UploadPart URLs; the registry checks the SHA-256 before the blob exists.

A registry extension (``/v2/<name>/_skyport/uploads``, the distribution-spec's
``_<extension>`` naming), used by ``skyport push``. The life of one upload:

1. **start** (digest, size): a blob the registry holds already is linked into the
   repository, as a mount is, and no byte moves. Otherwise an upload session (the
   store and open-uploads quota of ``skyport.uploads``, marked direct, state
   ``uploading``) and an S3 multipart upload at the session's blob key. The part size
   is the registry's choice: at least ``DIRECT_MIN_PART``, and large enough that the
   announced size fits in S3's 10,000 parts (5 TiB: 525 MiB parts).
2. **part URLs** for given part numbers: presigned UploadPart, SigV4, expiring after
   ``direct_url_seconds``; each names this key, this multipart upload id and one
   part number, nothing else.
3. **status**: the state, and the parts S3 holds (ListParts), so an interrupted
   client sends only the missing ones.
4. **complete**: the parts S3 lists must be 1..n with the announced size in all;
   the session moves to ``verifying`` (a conditional write: one completion wins) and
   the verifier is started, asynchronously: hashing 5 GiB takes longer than API
   Gateway's 30 s. The client polls status; a finished upload's session is gone and
   the blob is there (HEAD), a failed one's session is gone and no blob is.
5. **verify** (``DirectUploadService.verify``, run by the verifier: a Lambda function
   invoked with InvocationType=Event when deployed, a background thread locally):
   CompleteMultipartUpload with the parts S3 lists (never ETags a client claims),
   then the object is read back with parallel ranged GETs feeding one sequential
   SHA-256. A match registers the blob (``BlobService.register``), then removes the
   session; a wrong size or digest deletes the object and the session, and leaves no
   blob. S3 has no whole-object SHA-256 for multipart uploads (only CRCs), so reading
   the bytes back is the one way to know them.

A direct session holds a lease for its whole life (``storage/dynamodb/uploads.py``,
``DIRECT_LEASE``): the chunked-upload routes see it busy and never write to it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .blobs import BlobService
from .config import Settings
from .digest import CANONICAL_ALGORITHM, Digest
from .errors import BlobUploadInvalid, BlobUploadUnknown, SizeInvalid, TooManyRequests
from .reference import validate_name
from .storage import keys
from .storage.ports import (
    BlobRecord,
    DirectObjectStore,
    ObjectMissing,
    StorageUnavailable,
    TooManyUploads,
    UploadedPart,
    UploadMissing,
    UploadSession,
)
from .uploads import open_uploads_quota

MiB = 1024 * 1024
DIRECT_MIN_PART = 16 * MiB  # big enough that a 1 GiB layer is 64 requests, small enough to retry
MAX_PARTS = 10_000  # S3 multipart limit
MAX_PART = 5 * 1024**3  # S3's largest part
MAX_SIZE = 5 * 1024**4  # S3's largest object
MAX_URLS_PER_REQUEST = 1000  # the JSON answer stays far below API Gateway's 10 MB

UPLOADING = "uploading"
VERIFYING = "verifying"

# With Settings.verify_readers > 1 the verifier reads the object back in ranges of this
# size, that many at a time, into one sequential hasher; with 1, as one GetObject stream
# (docs/direct-uploads.md: which is faster where, measured).
VERIFY_RANGE = 16 * MiB


def part_size_for(size: int) -> int:
    """The part size for a blob of ``size`` bytes: DIRECT_MIN_PART, or more (whole MiB)
    when that many parts would not fit in S3's 10,000."""
    needed = -(-size // MAX_PARTS)
    return max(DIRECT_MIN_PART, -(-needed // MiB) * MiB)


@dataclass(frozen=True, slots=True)
class DirectUpload:
    """Where a direct upload stands, as the extension answers it."""

    upload_id: str
    digest: str
    size: int
    part_size: int
    state: str  # uploading | verifying
    parts: tuple[UploadedPart, ...] = ()

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))


class VerifierLauncher(Protocol):
    """Starts ``DirectUploadService.verify(upload_id)`` without waiting for it."""

    def launch(self, upload_id: str) -> None: ...


class DirectSessions(Protocol):
    """The upload session store (storage.ports.UploadSessions) and the direct state move."""

    def create(self, session: UploadSession, max_open: int = 0, now: int = 0) -> None: ...
    def get(self, upload_id: str) -> UploadSession | None: ...
    def delete(
        self, upload_id: str, repository: str, token: str | None = None, owner: str | None = None
    ) -> UploadSession: ...
    def move_direct(
        self, upload_id: str, repository: str, from_state: str, to_state: str, now: int, owner: str | None
    ) -> bool: ...


class DirectUploadService:
    def __init__(
        self,
        objects: DirectObjectStore,
        sessions: DirectSessions,
        blobs: BlobService,
        settings: Settings,
        launcher: VerifierLauncher,
        lease_token: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._sessions = sessions
        self._blobs = blobs
        self._settings = settings
        self._launcher = launcher
        self._lease = lease_token  # the store's lease of direct sessions (DIRECT_LEASE)
        self._clock = clock

    # --- the extension's calls ------------------------------------------------------------

    def start(
        self, repository: str, digest: str, size: int, owner: str | None = None, reader: Any = None
    ) -> DirectUpload | BlobRecord:
        """A BlobRecord when the registry holds the blob (now linked in ``repository``);
        else a new direct upload. ``reader``: the caller's Access (auth on), so a blob is
        linked only from what the caller could pull, as BlobService.mount does."""
        validate_name(repository)
        parsed = Digest.parse(digest)
        if parsed.algorithm != CANONICAL_ALGORITHM:
            raise BlobUploadInvalid({"digest": digest}, message="direct uploads take sha256 digests only")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
            raise SizeInvalid({"size": str(size)[:32]}, message=f"size must be an integer 0..{MAX_SIZE}")
        existing = self._blobs.mount(repository, digest, None, reader, size=size)
        if existing is not None:
            return existing
        upload_id = str(uuid.uuid4())
        limit = self._settings.max_open_uploads
        quota = open_uploads_quota(self._settings, repository, owner)
        key = keys.blob_object(upload_id)
        multipart_id = self._objects.start_multipart(key)
        session = UploadSession(
            upload_id=upload_id,
            repository=repository,
            blob_key=key,
            multipart_id=multipart_id,
            expires_at=int(self._clock()) + self._settings.upload_ttl_seconds,
            owner=owner,
            quota=quota,
            direct_digest=digest,
            direct_size=size,
            direct_state=UPLOADING,
        )
        try:
            self._sessions.create(session, limit, int(self._clock()))
        except TooManyUploads as full:
            self._objects.abort_multipart(key, multipart_id)
            raise TooManyRequests(
                {"reason": "too many upload sessions open", "limit": full.limit},
                message=f"at most {full.limit} upload sessions may be open at once",
            ) from full
        except BaseException:
            self._objects.abort_multipart(key, multipart_id)
            raise
        return self._describe(session)

    def part_urls(
        self, repository: str, upload_id: str, numbers: list[int], owner: str | None = None
    ) -> dict[int, str]:
        session = self._session(repository, upload_id, owner)
        if session.direct_state != UPLOADING:
            raise BlobUploadInvalid({"state": session.direct_state}, message="the upload is being verified")
        count = self._describe(session).part_count
        if not numbers or len(numbers) > MAX_URLS_PER_REQUEST:
            raise BlobUploadInvalid(message=f"ask for 1..{MAX_URLS_PER_REQUEST} part numbers at a time")
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= count:
                raise BlobUploadInvalid({"part": str(number)[:32]}, message=f"part numbers are 1..{count}")
        expires = self._settings.direct_url_seconds
        assert session.multipart_id is not None
        return {
            number: self._objects.presign_upload_part(session.blob_key, session.multipart_id, number, expires)
            for number in sorted(set(numbers))
        }

    def status(self, repository: str, upload_id: str, owner: str | None = None) -> DirectUpload:
        session = self._session(repository, upload_id, owner)
        parts: tuple[UploadedPart, ...] = ()
        if session.direct_state == UPLOADING:
            parts = tuple(self._list_parts(session))
        return replace(self._describe(session), parts=parts)

    def complete(self, repository: str, upload_id: str, owner: str | None = None) -> DirectUpload:
        """Check the parts, mark the session verifying and start the verifier. Called again
        while verifying, it answers the same (the first call's verifier is running)."""
        session = self._session(repository, upload_id, owner)
        upload = self._describe(session)
        if session.direct_state == UPLOADING:
            self._check_parts(upload, self._list_parts(session))
            now = int(self._clock())
            if self._sessions.move_direct(upload_id, repository, UPLOADING, VERIFYING, now, owner):
                try:
                    self._launcher.launch(upload_id)
                except BaseException:
                    # Not started: back to uploading, so that completing again starts it.
                    self._sessions.move_direct(upload_id, repository, VERIFYING, UPLOADING, now, owner)
                    raise
            # Started (by this call or a concurrent one), and maybe finished already:
            # the answer is "verifying", the client polls status from there.
            return replace(upload, state=VERIFYING)
        return upload

    def abort(self, repository: str, upload_id: str, owner: str | None = None) -> None:
        validate_name(repository)
        try:
            session = self._sessions.delete(upload_id, repository, self._lease, owner)
        except UploadMissing as missing:
            raise BlobUploadUnknown({"upload": upload_id}) from missing
        if session.multipart_id:
            self._objects.abort_multipart(session.blob_key, session.multipart_id)

    # --- the verifier ---------------------------------------------------------------------

    def verify(self, upload_id: str) -> str:
        """Complete the multipart upload, hash the object, and make it a blob or remove it.
        Returns what happened: "registered", "rejected", or "gone" (no session verifying;
        a second delivery of the same event finds nothing to do)."""
        session = self._sessions.get(upload_id)
        if session is None or session.direct_state != VERIFYING or session.multipart_id is None:
            return "gone"
        upload = self._describe(session)
        try:
            parts = self._list_parts(session)
            self._check_parts(upload, parts)
            self._objects.complete_multipart(session.blob_key, session.multipart_id, [p.etag for p in parts])
        except (BlobUploadInvalid, SizeInvalid, ObjectMissing):
            self._reject(session, completed=False)
            return "rejected"
        # A redelivered event after a crash past this point completes again (S3 allows it
        # while the object is there) and hashes again.
        size = self._objects.size_of(session.blob_key)
        if size != upload.size or self.hash_object(session.blob_key, size) != upload.digest:
            self._reject(session, completed=True)
            return "rejected"
        record = BlobRecord(upload.digest, size, session.blob_key)
        # Unlike a chunked upload, the blob is registered before the session goes: no
        # request can write to this key any more (the multipart upload is completed, and
        # presigned part URLs name only it), and the client, polling, must never see the
        # session gone before the blob is there. A crash in between leaves the session
        # verifying; the event's retry registers again (idempotent) and removes it.
        try:
            self._blobs.register(session.repository, record)
        except BaseException:
            self._blobs.discard_unregistered(upload.digest, session.blob_key)
            raise
        try:
            self._sessions.delete(upload_id, session.repository, self._lease)
        except UploadMissing:
            pass  # cancelled meanwhile, too late: the blob is verified and registered
        return "registered"

    def hash_object(self, key: str, size: int) -> str:
        """The object's sha256 digest. SHA-256 is sequential; the reads need not be:
        with ``verify_readers`` > 1, ranged GETs that many at a time, fed in order into
        one hasher (S3 serves each connection at a bounded rate); with 1, one stream."""
        hasher = hashlib.sha256()  # one pass, nothing to resume: OpenSSL's, the fastest here
        readers = self._settings.verify_readers
        if readers <= 1:
            for chunk in self._objects.stream(key):
                hasher.update(chunk)
            return f"sha256:{hasher.hexdigest()}"
        ranges = [(start, min(start + VERIFY_RANGE, size) - 1) for start in range(0, size, VERIFY_RANGE)]
        with ThreadPoolExecutor(readers, thread_name_prefix="skyport-verify-read") as pool:
            pending = [pool.submit(self._objects.read_range, key, *r) for r in ranges[:readers]]
            following = iter(ranges[readers:])
            while pending:
                chunk = pending.pop(0).result()
                step = next(following, None)
                if step is not None:
                    pending.append(pool.submit(self._objects.read_range, key, *step))
                hasher.update(chunk)
        return f"sha256:{hasher.hexdigest()}"

    def _reject(self, session: UploadSession, *, completed: bool) -> None:
        """A wrong size or digest: no object, no session, no blob."""
        if completed:
            self._objects.delete(session.blob_key)
        elif session.multipart_id:
            self._objects.abort_multipart(session.blob_key, session.multipart_id)
        try:
            self._sessions.delete(session.upload_id, session.repository, self._lease)
        except UploadMissing:
            pass

    # --- helpers --------------------------------------------------------------------------

    def _session(self, repository: str, upload_id: str, owner: str | None) -> UploadSession:
        validate_name(repository)
        session = self._sessions.get(upload_id)
        if (
            session is None
            or session.direct_state is None
            or session.repository != repository
            or session.expires_at <= self._clock()
            or (owner is not None and session.owner != owner)
        ):
            raise BlobUploadUnknown({"upload": upload_id})
        return session

    def _list_parts(self, session: UploadSession) -> list[UploadedPart]:
        assert session.multipart_id is not None
        try:
            return self._objects.list_parts(session.blob_key, session.multipart_id)
        except ObjectMissing as missing:
            raise BlobUploadUnknown({"upload": session.upload_id}) from missing

    @staticmethod
    def _check_parts(upload: DirectUpload, parts: list[UploadedPart]) -> None:
        """Parts 1..part_count, each of part_size but the last, adding up to the size."""
        count = upload.part_count
        numbers = [part.number for part in parts]
        missing = sorted(set(range(1, count + 1)) - set(numbers))
        if missing or len(numbers) != count:
            raise BlobUploadInvalid(
                {"missing_parts": missing[:100], "missing_count": len(missing)},
                message="parts are missing: upload them, then complete",
            )
        wrong = [p.number for p in parts if p.number < count and p.size != upload.part_size]
        total = sum(part.size for part in parts)
        if wrong or total != upload.size:
            raise SizeInvalid(
                {"wrong_size_parts": wrong[:100], "received": total, "size": upload.size},
                message="the parts do not add up to the announced size",
            )

    def _describe(self, session: UploadSession) -> DirectUpload:
        return DirectUpload(
            upload_id=session.upload_id,
            digest=session.direct_digest or "",
            size=session.direct_size,
            part_size=part_size_for(session.direct_size),
            state=session.direct_state or UPLOADING,
        )


class ThreadVerifier:
    """The verifier's local twin (``skyport serve``, tests): ``verify`` in a background
    thread of this process, one at a time per upload. Errors are kept, never raised: the
    session then stays verifying until it expires, as a failed Lambda would leave it."""

    def __init__(self, verify: Callable[[str], str], workers: int = 2) -> None:
        self._verify = verify
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="skyport-verifier")
        self.outcomes: dict[str, str] = {}

    def launch(self, upload_id: str) -> None:
        self._pool.submit(self._run, upload_id)

    def _run(self, upload_id: str) -> None:
        try:
            outcome = self._verify(upload_id)
        except Exception as error:  # noqa: BLE001 - reported through outcomes, like a Lambda error
            outcome = f"error: {type(error).__name__}"
        if len(self.outcomes) >= 1000:  # a long-running server keeps the recent ones only
            self.outcomes.clear()
        self.outcomes[upload_id] = outcome


class LambdaVerifier:
    """The deployed verifier: the verify function (functions/verify), invoked with
    InvocationType=Event, so the API answers at once; Lambda retries a failed run twice."""

    def __init__(self, client: Any, function_name: str) -> None:
        self._client = client
        self._function = function_name

    def launch(self, upload_id: str) -> None:
        import json

        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.invoke(
                FunctionName=self._function,
                InvocationType="Event",
                Payload=json.dumps({"upload_id": upload_id}).encode(),
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"Lambda invoke: {error}") from error
