"""Blob uploads (distribution-spec "Pushing blobs": POST, PATCH, PUT, GET status, DELETE).

An upload is a session (``UploadSession``, in the table) and, in S3, a multipart
upload at the blob's key plus at most one small tail object. How one request's body
gets there (parts, the remainder kept as a short last part or a tail object, and
folding) is ``storage/multipart.py``; this module is the service around it: sessions,
leases, verification and what a failure leaves behind.

One request at a time may write to an upload: it leases the session with a
conditional write and gives the lease back when it stores the new state. A
request that fails stores nothing, so the session stays as it was, with the
stray parts, tail and staging object it wrote aborted or deleted. Except where
the stored session names S3 state that is gone, so it cannot go on: a request
failing after its fold completed the old multipart upload, or S3 answering that
a multipart upload or tail object the session names does not exist. Such a
session is removed with what it kept (the client hears BLOB_UPLOAD_UNKNOWN and
starts over) rather than left to fail on every request. A request that dies
mid-fold (no error path runs) leaves the session as it was: S3 completes a
multipart upload again while the object it made is still there, so the next
request folds again; past the staging object's deletion, the next request finds
the upload gone, as above. The closing PUT removes the session before it
registers the blob, so no session can write to a registered blob's key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from .blobs import BlobService
from .concurrency import run_blocking
from .config import Settings
from .digest import CANONICAL_ALGORITHM, Digest, ResumableHash
from .errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    TooManyRequests,
    UploadBusy,
    UploadPosition,
)
from .reference import validate_name
from .storage import keys
from .storage.multipart import ByteStream, PartWriter, body_too_large
from .storage.ports import (
    BlobRecord,
    ObjectMissing,
    ObjectStore,
    StorageUnavailable,
    TooManyUploads,
    UploadConflict,
    UploadMissing,
    UploadSession,
    UploadSessions,
)


def open_uploads_quota(settings: Settings, repository: str, owner: str | None) -> str | None:
    """The count of open sessions a new one is counted in: its owner's (auth on), else its
    repository's; None when there is no cap (``max_open_uploads`` 0)."""
    if not settings.max_open_uploads:
        return None
    return f"identity:{owner}" if owner is not None else f"repository:{repository}"


def _copy(session: UploadSession) -> UploadSession:
    return replace(session, part_etags=list(session.part_etags))


class UploadService:
    def __init__(
        self,
        objects: ObjectStore,
        sessions: UploadSessions,
        blobs: BlobService,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._sessions = sessions
        self._blobs = blobs
        self._settings = settings
        self._clock = clock

    def _new_session(self, repository: str, algorithm: str = CANONICAL_ALGORITHM) -> UploadSession:
        upload_id = str(uuid.uuid4())
        return UploadSession(
            upload_id=upload_id,
            repository=repository,
            blob_key=keys.blob_object(upload_id),
            hash_algorithm=algorithm,
            hash_state=ResumableHash(algorithm).state(),
            expires_at=int(self._clock()) + self._settings.upload_ttl_seconds,
        )

    # --- sessions -------------------------------------------------------------------------

    # ``owner`` (auth on): the identity starting the upload; only it may use the session,
    # to anyone else it is unknown. None (auth off): anyone with the id may.

    def start(self, repository: str, owner: str | None = None) -> UploadSession:
        """A new session, if its owner (auth on) or, with auth off, its repository has
        fewer than ``max_open_uploads`` open: else TOOMANYREQUESTS, the spec's code for a
        client over a limit, until one is finished, cancelled (DELETE) or expires."""
        validate_name(repository)
        limit = self._settings.max_open_uploads
        quota = open_uploads_quota(self._settings, repository, owner)
        session = replace(self._new_session(repository), owner=owner, quota=quota)
        try:
            self._sessions.create(session, limit, int(self._clock()))
        except TooManyUploads as full:
            whose = "per identity" if owner is not None else "per repository"
            raise TooManyRequests(
                {"reason": "too many upload sessions open", "limit": full.limit},
                message=f"at most {full.limit} upload sessions may be open at once ({whose}):"
                " finish or cancel (DELETE) one, or wait for one to expire",
            ) from full
        return session

    def status(self, repository: str, upload_id: str, owner: str | None = None) -> UploadSession:
        validate_name(repository)
        session = self._sessions.get(upload_id)
        if (
            session is None
            or session.repository != repository
            or session.expires_at <= self._clock()
            or (owner is not None and session.owner != owner)
        ):
            raise BlobUploadUnknown({"upload": upload_id})
        return session

    def cancel(self, repository: str, upload_id: str, owner: str | None = None) -> None:
        validate_name(repository)
        try:
            session = self._sessions.delete(upload_id, repository, owner=owner)
        except UploadMissing as missing:
            raise BlobUploadUnknown({"upload": upload_id}) from missing
        self._discard(session)

    def _discard(self, session: UploadSession) -> None:
        """What a removed session kept in S3: its multipart upload (with a short last
        part, if any) and its tail object. Never blob_key: it may hold a registered blob."""
        if session.multipart_id:
            self._objects.abort_multipart(session.blob_key, session.multipart_id)
        if session.tail_key:
            self._objects.delete(session.tail_key)

    def _remove_unresumable(self, session: UploadSession, token: str) -> None:
        """A failed request whose stored session can no longer be resumed: remove it
        (under this request's lease) and what it kept, so the client starts over."""
        try:
            self._sessions.delete(session.upload_id, session.repository, token)
        except UploadMissing:
            return  # the lease is gone: cancelled, or another request holds the upload now
        try:
            self._discard(session)
        except Exception:  # noqa: BLE001 - best effort; the lifecycle rules are the backstop
            pass

    async def _failed(
        self, writer: PartWriter, stored: UploadSession, token: str, error: BaseException
    ) -> None:
        """The error path of PATCH and PUT: undo what the request wrote; keep the stored
        session if it still describes S3, else remove it."""
        await writer.abandon()
        if writer.stored_upload_gone or isinstance(error, ObjectMissing):
            await run_blocking(self._remove_unresumable, stored, token)
        else:
            await run_blocking(self._sessions.release, stored.upload_id, token)

    # --- writes ---------------------------------------------------------------------------

    def _claim(
        self,
        repository: str,
        upload_id: str,
        token: str,
        content_range: tuple[int, int] | None,
        owner: str | None = None,
    ) -> UploadSession:
        validate_name(repository)
        limit = self._settings.max_request_body
        if limit and content_range and content_range[1] - content_range[0] + 1 > limit:
            raise body_too_large(limit)  # announced too big: refused before the session is touched
        now = int(self._clock())
        try:
            return self._sessions.claim(
                upload_id,
                repository,
                token,
                now,
                now + self._settings.upload_lease_seconds,
                expected_offset=content_range[0] if content_range else None,
                owner=owner,
            )
        except UploadMissing as missing:
            raise BlobUploadUnknown({"upload": upload_id}) from missing
        except UploadConflict as conflict:
            if conflict.busy:
                raise UploadBusy({"upload": upload_id}) from conflict
            offset = conflict.current.offset if conflict.current else 0
            # distribution-spec: out-of-order chunk -> 416 with Range and Location.
            raise RangeInvalid(
                {"expected_start": offset},
                message="chunk does not start where the upload ends",
                upload=UploadPosition(repository, upload_id, offset),
            ) from conflict

    @staticmethod
    def _check_length(writer: PartWriter, content_range: tuple[int, int] | None) -> None:
        if content_range and writer.received != content_range[1] - content_range[0] + 1:
            session = writer.session
            # distribution-spec: a 416 carries Range and Location, so the client can resume.
            raise RangeInvalid(
                {"received": writer.received},
                message="chunk length does not match Content-Range",
                upload=UploadPosition(session.repository, session.upload_id, session.offset),
            )

    def _save(self, session: UploadSession, token: str) -> None:
        try:
            self._sessions.save(session, token)
        except (UploadConflict, StorageUnavailable) as error:
            # A save whose answer was lost (a timeout, or an SDK retry refused because
            # the first attempt had landed and dropped the lease) may have stored the
            # new state: it did if that is what is stored, and then the request succeeded.
            try:
                current = self._sessions.get(session.upload_id)
            except StorageUnavailable:
                raise error from None
            if current == session:
                return
            if isinstance(error, StorageUnavailable):
                raise
            # The lease is gone: a DELETE cancelled the upload while this request wrote
            # to it (or, past the lease time, another request took it over). What this
            # request sent does not count; the client hears so as an OCI error.
            if current is None:
                raise BlobUploadUnknown({"upload": session.upload_id}) from error
            raise UploadBusy({"upload": session.upload_id}) from error

    def _delete_stale(self, key: str) -> None:
        """A tail object no session names any more, once the new state is stored. Best
        effort: the request has succeeded, and the bucket's lifecycle rule removes tails."""
        try:
            self._objects.delete(key)
        except StorageUnavailable:
            pass

    async def append(
        self,
        repository: str,
        upload_id: str,
        body: ByteStream,
        content_range: tuple[int, int] | None = None,
        owner: str | None = None,
    ) -> UploadSession:
        """PATCH: append one chunk (or a whole streamed body) to the upload."""
        token = uuid.uuid4().hex
        stored = await run_blocking(self._claim, repository, upload_id, token, content_range, owner)
        writer = PartWriter(self._objects, _copy(stored), self._settings)
        try:
            await writer.consume(body)
            self._check_length(writer, content_range)
            # No Content-Range: a client streaming the whole blob, which closes with an
            # empty PUT; the remainder goes out as a short last part (see the module doc).
            stale_tail = await writer.end_chunk(streamed=content_range is None)
            await run_blocking(self._save, writer.session, token)
        except BaseException as error:
            await self._failed(writer, stored, token, error)
            if isinstance(error, ObjectMissing):
                raise BlobUploadUnknown({"upload": upload_id}) from error
            raise
        if stale_tail:
            await run_blocking(self._delete_stale, stale_tail)
        return writer.session

    async def finish(
        self,
        repository: str,
        upload_id: str,
        digest: str,
        body: ByteStream,
        content_range: tuple[int, int] | None = None,
        owner: str | None = None,
    ) -> BlobRecord:
        """PUT ?digest=: the optional last chunk, verification, and the blob."""
        expected = Digest.parse(digest)
        token = uuid.uuid4().hex
        stored = await run_blocking(self._claim, repository, upload_id, token, content_range, owner)
        session = _copy(stored)
        if session.offset == 0 and session.hash_algorithm != expected.algorithm:
            # Nothing hashed yet: hash with the algorithm the client names.
            session = replace(session, hash_algorithm=expected.algorithm, hash_state=b"")
        writer = PartWriter(self._objects, session, self._settings)
        try:
            await writer.consume(body)
            self._check_length(writer, content_range)
            verified = writer.session.hash_algorithm == expected.algorithm
            if verified and writer.hash.digest() != expected:
                raise DigestInvalid({"digest": digest}, message="digest does not match the uploaded content")
            record = await writer.complete()
        except BaseException as error:
            await self._failed(writer, stored, token, error)
            if isinstance(error, ObjectMissing):
                raise BlobUploadUnknown({"upload": upload_id}) from error
            raise
        record = replace(record, digest=str(expected))
        try:
            if not verified:
                # Chunks were hashed as sha256 but the client names another
                # algorithm: the one case that re-reads the blob.
                await self._verify_by_reading(record, expected, stored, token)
            # The session goes before the blob is registered: once a blob points at blob_key,
            # no session may write there again (a request still holding this one, after a
            # crash here, could otherwise fold or re-put over a registered blob). A crash in
            # between leaks the unregistered object; the client starts the upload over.
            try:
                await run_blocking(self._sessions.delete, upload_id, repository, token)
            except UploadMissing:
                pass  # cancelled concurrently, but the blob is complete: 201 holds
            if stored.tail_key:
                # In the blob now, and named by no session: gone before the blob is
                # registered, so a failure to register leaves no tail behind.
                await run_blocking(self._delete_stale, stored.tail_key)
            return await run_blocking(self._blobs.register, repository, record)
        except BaseException:
            await run_blocking(self._forget_completed, record, stored, token)
            raise

    def _forget_completed(self, record: BlobRecord, stored: UploadSession | None, token: str) -> None:
        """The error path of a request that made the blob's object (it completed the
        upload) and then failed before the blob was registered: delete that object, which
        nothing would reference and no lifecycle rule removes. Best effort, and only once
        no session names it (else a retry completes the upload again and registers the
        object at its key) and no blob record points at it (a registration whose answer
        was lost)."""
        try:
            if stored is not None:
                try:
                    self._sessions.delete(stored.upload_id, stored.repository, token)
                except UploadMissing:
                    # Gone already (removed by this request, or cancelled), or held by a
                    # request that took the lease over: that one may complete it again.
                    if self._sessions.get(stored.upload_id) is not None:
                        return
                if stored.tail_key:
                    self._delete_stale(stored.tail_key)
            self._blobs.discard_unregistered(record.digest, record.key)
        except Exception:  # noqa: BLE001 - the request already failed; the error it reports stands
            pass

    async def _verify_by_reading(
        self, record: BlobRecord, expected: Digest, stored: UploadSession, token: str
    ) -> None:
        def read_digest() -> Digest:
            hasher = ResumableHash(expected.algorithm)
            for chunk in self._objects.stream(record.key):
                hasher.update(bytes(chunk))
            return hasher.digest()

        if await run_blocking(read_digest) != expected:
            # The parts are used up by the completed object: the upload cannot go on.
            await run_blocking(self._objects.delete, record.key)
            await run_blocking(self._sessions.delete, stored.upload_id, stored.repository, token)
            if stored.tail_key:
                await run_blocking(self._objects.delete, stored.tail_key)
            raise DigestInvalid(
                {"digest": str(expected)}, message="digest does not match the uploaded content"
            )

    async def upload_whole(self, repository: str, digest: str, body: ByteStream) -> BlobRecord:
        """POST ?digest= with the blob as body: a monolithic upload, no session stored."""
        validate_name(repository)
        expected = Digest.parse(digest)
        session = self._new_session(repository, expected.algorithm)
        writer = PartWriter(self._objects, session, self._settings)
        try:
            await writer.consume(body)
            if writer.hash.digest() != expected:
                raise DigestInvalid({"digest": digest}, message="digest does not match the uploaded content")
            record = await writer.complete()
        except BaseException:
            await writer.abandon()  # aborts the multipart upload it started
            raise
        record = replace(record, digest=str(expected))
        try:
            return await run_blocking(self._blobs.register, repository, record)
        except BaseException:
            await run_blocking(self._forget_completed, record, None, "")
            raise
