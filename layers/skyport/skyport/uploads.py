"""Blob uploads (distribution-spec "Pushing blobs": POST, PATCH, PUT, GET status, DELETE).

Bytes go to S3 as a multipart upload while they arrive, in parts of at least
``min_part_size`` (S3's rule for every part but the last). What a request
leaves over, less than that, is kept in one of two ways:

- **a short last part**, at the end of an upload's first request when it is a
  PATCH without ``Content-Range`` that filled at least one part: a client
  streaming the whole blob (docker, podman, skopeo), whose empty closing PUT
  then only has to complete the multipart upload. Such a push costs
  ceil(size/part) + 2 S3 calls and reads nothing back. The session records the
  bet: ``tail_size`` is the short part's size, the last of ``part_etags``, and
  there is no tail object (``UploadSession.short_last_part``).
- **a "tail" object** (``keys.upload_tail_object``) otherwise: after a chunk
  with ``Content-Range`` (another chunk most likely follows), after any later
  request, or when no part was filled (the whole blob is under 5 MiB). The next
  chunk reads it back first, so chunks of any size coalesce into valid parts;
  an empty closing PUT puts it in server-side (UploadPartCopy as the last part,
  or CopyObject when it is the whole blob), without reading it back.

If more bytes follow a short last part after all, it cannot stay where it is
(it would no longer be last), and it cannot be read back while its multipart
upload is open. At the end of that request, once its body is in and checked,
the upload is "folded": the old multipart upload is completed at the blob's key
(the only key S3 completes it at) as a staging object, copied server-side into
the first parts of a new multipart upload on the same key (UploadPartCopy, at
most 5 GiB a part; the staging object is at least one full part, so never too
small), and deleted before the session is saved. That costs up to 4 S3 calls
more than a parked tail would have, at most once per upload, and no byte comes
back through the registry. The SHA-256 state covers every byte once: nothing
folded, parked or read back is hashed again. It is saved with the session after
every request, so the closing PUT neither copies nor re-reads the blob.

One request at a time may write to an upload: it leases the session with a
conditional write and gives the lease back when it stores the new state. A
request that fails stores nothing, so the session stays as it was, with the
stray parts, tail and staging object it wrote aborted or deleted. Except where
the stored session names S3 state that is gone, so it cannot go on: a request
failing after its fold completed the old multipart upload, or S3 answering that
a multipart upload or tail object the session names does not exist. Such a
session is deleted with what it kept (the client hears BLOB_UPLOAD_UNKNOWN and
starts over) rather than left to fail on every request. A request that dies
mid-fold (no error path runs) leaves the session as it was: S3 completes a
multipart upload again while the object it made is still there, so the next
request folds again; past the staging object's deletion, the next request finds
the upload gone, as above. The closing PUT removes the session before it
registers the blob, so no session can write to a registered blob's key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, Callable
from dataclasses import replace

from .blobs import BlobService
from .config import Settings
from .digest import CANONICAL_ALGORITHM, Digest, ResumableHash
from .errors import (
    BlobUploadUnknown,
    DigestInvalid,
    PayloadTooLarge,
    RangeInvalid,
    UploadBusy,
)
from .reference import validate_name
from .storage import keys
from .storage.ports import (
    BlobRecord,
    ObjectMissing,
    ObjectStore,
    UploadConflict,
    UploadMissing,
    UploadSession,
    UploadSessions,
)

MAX_PARTS = 10_000  # S3 multipart limit
MAX_COPY_PART = 5 * 1024**3  # S3's largest part, also for UploadPartCopy
ByteStream = AsyncIterable[bytes]


def upload_location(repository: str, upload_id: str) -> str:
    return f"/v2/{repository}/blobs/uploads/{upload_id}"


def range_header(offset: int) -> str:
    # Inclusive end of what was received (distribution-spec); Distribution
    # answers "0-0" for an empty upload, and clients expect that.
    return f"0-{max(offset - 1, 0)}"


async def _run(fn: Callable, *args):  # blocking SDK calls leave the event loop free
    return await asyncio.to_thread(fn, *args)


def body_too_large(limit: int) -> PayloadTooLarge:
    # Behind Lambda the client's only way forward is smaller requests: say so.
    return PayloadTooLarge(
        {"limit": limit},
        message=f"request body larger than {limit} bytes, the most one request may carry here: "
                f"push the blob in chunks (PATCH with Content-Range) of at most {limit} bytes")


def copy_ranges(size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges that copy ``size`` bytes as parts of at most MAX_COPY_PART,
    near-equal so none is small (each is more than half of MAX_COPY_PART when several)."""
    count = max(1, -(-size // MAX_COPY_PART))
    bounds = [size * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def _copy(session: UploadSession) -> UploadSession:
    return replace(session, part_etags=list(session.part_etags))


class _PartWriter:
    """Hashes a request body and streams it into the session's multipart upload.

    ``session`` is the writer's own copy: the stored state stays with the caller
    until the new one is saved."""

    def __init__(self, objects: ObjectStore, session: UploadSession, settings: Settings) -> None:
        self._objects = objects
        self.session = session
        self._part_size = settings.part_size
        self._min_part = settings.min_part_size
        self._max_body = settings.max_request_body
        self.hash = ResumableHash(session.hash_algorithm, session.hash_state or None)
        self.buffer = bytearray()
        self.received = 0
        # The stored leftover (tail or short part) is dealt with when the first byte
        # arrives: an empty body (the usual closing PUT) leaves it where it is.
        self._begun = False
        # One part uploads while the next one fills: network and body overlap.
        self._in_flight: asyncio.Future | None = None
        self._started_multipart = False  # by this request: a failure must abort it
        self._written_tail: str | None = None  # by this request: a failure must delete it
        # A multipart upload ending in a short part, to fold into this request's one:
        # (its id, its part ETags, its size); parts 1..k of the new upload wait for it.
        self._fold_from: tuple[str, list[str], int] | None = None
        # Set once this request completed the stored session's multipart upload (the
        # fold's first step): from then on the stored session names an upload that is
        # gone, and only the new state (or none) is valid.
        self.spent = False
        self._staged = False  # blob_key holds the fold's staging object, ours to delete

    async def _begin(self) -> None:
        """First byte of the body: pick up what the stored session left over."""
        self._begun = True
        session = self.session
        if session.short_last_part and session.multipart_id:
            # Bytes follow a part uploaded short: it has to stop being the last one.
            reserved = len(copy_ranges(session.offset))
            self._fold_from = (session.multipart_id, list(session.part_etags), session.offset)
            session.multipart_id = None  # a new one starts with the first part it needs
            session.part_etags = [""] * reserved  # filled by _fold
            session.tail_size = 0
        elif session.tail_key and session.tail_size:
            self.buffer += await _run(self._objects.read, session.tail_key)

    async def consume(self, body: ByteStream) -> None:
        async for chunk in body:
            if not chunk:
                continue
            if self._max_body and self.received + len(chunk) > self._max_body:
                # Refused before the chunk is hashed or stored: the caller's
                # error path leaves the session as it was.
                raise body_too_large(self._max_body)
            if not isinstance(chunk, bytes):
                chunk = bytes(chunk)
            if not self._begun:
                await self._begin()
            self.hash.update(chunk)
            self.buffer += chunk
            self.received += len(chunk)
            while len(self.buffer) >= self._part_size:
                # The part in flight finishes before the next is cut from the buffer:
                # one part uploading while the buffer fills the next, never a third.
                await self.drain()
                part = bytes(memoryview(self.buffer)[: self._part_size])
                del self.buffer[: self._part_size]
                await self._send_part(part)

    async def _start_multipart(self) -> str:
        session = self.session
        if session.multipart_id is None:
            session.multipart_id = await _run(self._objects.start_multipart, session.blob_key)
            self._started_multipart = True
        return session.multipart_id

    async def _send_part(self, data: bytes) -> None:
        session = self.session
        multipart_id = await self._start_multipart()
        await self.drain()
        number = len(session.part_etags) + 1
        if number > MAX_PARTS:
            raise PayloadTooLarge(message="blob exceeds the largest upload this registry accepts")
        self._in_flight = asyncio.ensure_future(
            _run(self._objects.upload_part, session.blob_key, multipart_id, number, data)
        )

    async def drain(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self.session.part_etags.append(await future)

    async def _fold(self) -> None:
        """Put the bytes of the multipart upload that ended in a short part in front of
        this request's one, server-side: complete the old upload at the blob's key (the
        staging object), then copy it into the parts reserved for it."""
        if self._fold_from is None:
            return
        old_id, old_etags, size = self._fold_from
        session = self.session
        multipart_id = await self._start_multipart()
        await _run(self._objects.complete_multipart, session.blob_key, old_id, old_etags)
        self._fold_from = None
        self.spent = self._staged = True
        copied = await asyncio.gather(*(
            _run(self._objects.copy_part, session.blob_key, multipart_id, number,
                 session.blob_key, first, last)
            for number, (first, last) in enumerate(copy_ranges(size), start=1)),
            return_exceptions=True)  # all settled before a failure is raised
        for result in copied:
            if isinstance(result, BaseException):
                raise result
        session.part_etags[: len(copied)] = copied

    async def _drop_staging(self) -> None:
        if self._staged:
            await _run(self._objects.delete, self.session.blob_key)
            self._staged = False

    async def abandon(self) -> None:
        if self._in_flight is not None:
            try:
                await self._in_flight
            except Exception:  # noqa: BLE001 - the request already failed for another reason
                pass
            self._in_flight = None
        session = self.session
        # Best effort, each: the request already failed, and the bucket's lifecycle
        # rules are the backstop for multipart uploads and for tails.
        if self._started_multipart:
            # The stored session (if any) never learns of a multipart upload started by a
            # failed request: abort it now rather than leave its parts billed until the
            # bucket's lifecycle rule finds them.
            self._started_multipart = False
            try:
                await _run(self._objects.abort_multipart, session.blob_key, session.multipart_id)
            except Exception:  # noqa: BLE001
                pass
        for key, mine in ((self._written_tail, True), (session.blob_key, self._staged)):
            if key and mine:
                try:
                    await _run(self._objects.delete, key)
                except Exception:  # noqa: BLE001
                    pass
        self._written_tail, self._staged = None, False

    async def park(self, streamed: bool) -> str | None:
        """End of a PATCH: flush what makes a part, keep the rest as a short last part
        (``streamed``: no Content-Range, the whole blob most likely) or as a tail object.
        Returns the tail object the stored state pointed to, now stale."""
        session = self.session
        if not self._begun:
            return None  # an empty body changes nothing
        if len(self.buffer) >= self._min_part:
            await self._send_part(bytes(self.buffer))
            self.buffer.clear()
        await self.drain()
        stale_tail = session.tail_key
        end = session.offset + self.received
        session.tail_key, session.tail_size = None, len(self.buffer)
        if self.buffer and streamed and session.offset == 0 and session.part_etags:
            # The whole blob in one PATCH, as docker, podman and skopeo send it: a short
            # last part, on the bet that the closing PUT brings nothing more. Only for
            # the upload's first request, so a client streaming several PATCHes gets
            # tails, and an upload is folded at most once.
            await self._send_part(bytes(self.buffer))
            await self.drain()
        elif self.buffer:
            session.tail_key = keys.upload_tail_object(session.upload_id, end)
            await _run(self._objects.put, session.tail_key, bytes(self.buffer))
            self._written_tail = session.tail_key
        self.buffer.clear()
        await self._fold()
        await self._drop_staging()  # before the save: a crash leaks no staging object then
        session.offset = end
        session.hash_state = self.hash.state()
        return stale_tail if stale_tail != session.tail_key else None

    async def complete(self) -> BlobRecord:
        """End of the upload: the last part, then CompleteMultipartUpload (no copy of
        the blob; at most the sub-5 MiB tail is copied, server-side)."""
        session = self.session
        size = session.offset + self.received
        if not self._begun and session.tail_key and session.tail_size:
            # Empty closing PUT after chunks: the parked tail goes in without a read-back.
            if session.multipart_id is None:
                await _run(self._objects.copy, session.tail_key, session.blob_key)
            else:
                session.part_etags.append(await _run(
                    self._objects.copy_part, session.blob_key, session.multipart_id,
                    len(session.part_etags) + 1, session.tail_key, None, None))
                await _run(self._objects.complete_multipart, session.blob_key,
                           session.multipart_id, session.part_etags)
        elif session.multipart_id is None and self._fold_from is None:
            # Small blob: everything is in memory, one PutObject.
            await _run(self._objects.put, session.blob_key, bytes(self.buffer))
        else:
            if self.buffer:
                await self._send_part(bytes(self.buffer))
            await self.drain()
            await self._fold()
            await _run(self._objects.complete_multipart, session.blob_key, session.multipart_id,
                       session.part_etags)
        # The blob is at blob_key now (over the staging object, if any).
        self.buffer.clear()
        self._started_multipart, self._staged = False, False
        return BlobRecord(digest="", size=size, key=session.blob_key)


class UploadService:
    def __init__(self, objects: ObjectStore, sessions: UploadSessions, blobs: BlobService,
                 settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._objects = objects
        self._sessions = sessions
        self._blobs = blobs
        self._settings = settings
        self._clock = clock

    def _new_session(self, repository: str, algorithm: str = CANONICAL_ALGORITHM) -> UploadSession:
        upload_id = str(uuid.uuid4())
        return UploadSession(
            upload_id=upload_id, repository=repository, blob_key=keys.blob_object(upload_id),
            hash_algorithm=algorithm, hash_state=ResumableHash(algorithm).state(),
            expires_at=int(self._clock()) + self._settings.upload_ttl_seconds,
        )

    # --- sessions -------------------------------------------------------------------------

    # ``owner`` (auth on): the identity starting the upload; only it may use the session,
    # to anyone else it is unknown. None (auth off): anyone with the id may.

    def start(self, repository: str, owner: str | None = None) -> UploadSession:
        validate_name(repository)
        session = replace(self._new_session(repository), owner=owner)
        self._sessions.create(session)
        return session

    def status(self, repository: str, upload_id: str, owner: str | None = None) -> UploadSession:
        validate_name(repository)
        session = self._sessions.get(upload_id)
        if (session is None or session.repository != repository or session.expires_at <= self._clock()
                or (owner is not None and session.owner != owner)):
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

    def _forget(self, session: UploadSession, token: str) -> None:
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

    async def _failed(self, writer: _PartWriter, stored: UploadSession, token: str,
                      error: BaseException) -> None:
        """The error path of PATCH and PUT: undo what the request wrote; keep the stored
        session if it still describes S3, else forget it."""
        await writer.abandon()
        if writer.spent or isinstance(error, ObjectMissing):
            await _run(self._forget, stored, token)
        else:
            await _run(self._sessions.release, stored.upload_id, token)

    # --- writes ---------------------------------------------------------------------------

    def _claim(self, repository: str, upload_id: str, token: str,
               content_range: tuple[int, int] | None, owner: str | None = None) -> UploadSession:
        validate_name(repository)
        limit = self._settings.max_request_body
        if limit and content_range and content_range[1] - content_range[0] + 1 > limit:
            raise body_too_large(limit)  # announced too big: refused before the session is touched
        now = int(self._clock())
        try:
            return self._sessions.claim(
                upload_id, repository, token, now, now + self._settings.upload_lease_seconds,
                expected_offset=content_range[0] if content_range else None, owner=owner)
        except UploadMissing as missing:
            raise BlobUploadUnknown({"upload": upload_id}) from missing
        except UploadConflict as conflict:
            if conflict.busy:
                raise UploadBusy({"upload": upload_id}) from conflict
            offset = conflict.current.offset if conflict.current else 0
            # distribution-spec: out-of-order chunk -> 416 with Range and Location.
            raise RangeInvalid(
                {"expected_start": offset}, message="chunk does not start where the upload ends",
                headers={"Range": range_header(offset), "Location": upload_location(repository, upload_id)},
            ) from conflict

    @staticmethod
    def _check_length(writer: _PartWriter, content_range: tuple[int, int] | None) -> None:
        if content_range and writer.received != content_range[1] - content_range[0] + 1:
            session = writer.session
            # distribution-spec: a 416 carries Range and Location, so the client can resume.
            raise RangeInvalid(
                {"received": writer.received}, message="chunk length does not match Content-Range",
                headers={"Range": range_header(session.offset),
                         "Location": upload_location(session.repository, session.upload_id)})

    def _save(self, session: UploadSession, token: str) -> None:
        try:
            self._sessions.save(session, token)
        except UploadConflict as lost:
            # The lease is gone: a DELETE cancelled the upload while this request wrote
            # to it (or, past the lease time, another request took it over). What this
            # request sent does not count; the client hears so as an OCI error.
            if self._sessions.get(session.upload_id) is None:
                raise BlobUploadUnknown({"upload": session.upload_id}) from lost
            raise UploadBusy({"upload": session.upload_id}) from lost

    async def append(self, repository: str, upload_id: str, body: ByteStream,
                     content_range: tuple[int, int] | None = None, owner: str | None = None) -> UploadSession:
        """PATCH: append one chunk (or a whole streamed body) to the upload."""
        token = uuid.uuid4().hex
        stored = await _run(self._claim, repository, upload_id, token, content_range, owner)
        writer = _PartWriter(self._objects, _copy(stored), self._settings)
        try:
            await writer.consume(body)
            self._check_length(writer, content_range)
            # No Content-Range: a client streaming the whole blob, which closes with an
            # empty PUT; the remainder goes out as a short last part (see the module doc).
            stale_tail = await writer.park(streamed=content_range is None)
            await _run(self._save, writer.session, token)
        except BaseException as error:
            await self._failed(writer, stored, token, error)
            if isinstance(error, ObjectMissing):
                raise BlobUploadUnknown({"upload": upload_id}) from error
            raise
        if stale_tail:
            await _run(self._objects.delete, stale_tail)
        return writer.session

    async def finish(self, repository: str, upload_id: str, digest: str, body: ByteStream,
                     content_range: tuple[int, int] | None = None, owner: str | None = None) -> BlobRecord:
        """PUT ?digest=: the optional last chunk, verification, and the blob."""
        expected = Digest.parse(digest)
        token = uuid.uuid4().hex
        stored = await _run(self._claim, repository, upload_id, token, content_range, owner)
        session = _copy(stored)
        if session.offset == 0 and session.hash_algorithm != expected.algorithm:
            # Nothing hashed yet: hash with the algorithm the client names.
            session = replace(session, hash_algorithm=expected.algorithm, hash_state=b"")
        writer = _PartWriter(self._objects, session, self._settings)
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
        if not verified:
            # Chunks were hashed as sha256 but the client names another
            # algorithm: the one case that re-reads the blob.
            await self._verify_by_reading(record, expected, stored, token)
        # The session goes before the blob is registered: once a blob points at blob_key,
        # no session may write there again (a request still holding this one, after a
        # crash here, could otherwise fold or re-put over a registered blob). A crash in
        # between leaks the unregistered object; the client starts the upload over.
        try:
            await _run(self._sessions.delete, upload_id, repository, token)
        except UploadMissing:
            pass  # cancelled concurrently, but the blob is complete: 201 holds
        registered = await _run(self._blobs.register, repository, record)
        if stored.tail_key:
            await _run(self._objects.delete, stored.tail_key)  # in the blob now
        return registered

    async def _verify_by_reading(self, record: BlobRecord, expected: Digest, stored: UploadSession,
                                 token: str) -> None:
        def read_digest() -> Digest:
            hasher = ResumableHash(expected.algorithm)
            for chunk in self._objects.stream(record.key):
                hasher.update(bytes(chunk))
            return hasher.digest()

        if await _run(read_digest) != expected:
            # The parts are spent in the completed object: the upload cannot go on.
            await _run(self._objects.delete, record.key)
            await _run(self._sessions.delete, stored.upload_id, stored.repository, token)
            if stored.tail_key:
                await _run(self._objects.delete, stored.tail_key)
            raise DigestInvalid({"digest": str(expected)},
                                message="digest does not match the uploaded content")

    async def upload_whole(self, repository: str, digest: str, body: ByteStream) -> BlobRecord:
        """POST ?digest= with the blob as body: a monolithic upload, no session stored."""
        validate_name(repository)
        expected = Digest.parse(digest)
        session = self._new_session(repository, expected.algorithm)
        writer = _PartWriter(self._objects, session, self._settings)
        try:
            await writer.consume(body)
            if writer.hash.digest() != expected:
                raise DigestInvalid({"digest": digest}, message="digest does not match the uploaded content")
            record = await writer.complete()
        except BaseException:
            await writer.abandon()  # aborts the multipart upload it started
            raise
        return await _run(self._blobs.register, repository, replace(record, digest=str(expected)))


def parse_content_range(value: str | None) -> tuple[int, int] | None:
    """``Content-Range: <start>-<end>`` (inclusive; distribution-spec chunked upload).
    Also accepts the RFC 9110 forms ``bytes <start>-<end>/<total>`` and ``bytes=``."""
    if value is None:
        return None
    text = value.strip()
    for prefix in ("bytes=", "bytes "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    start, sep, end = text.partition("-")
    if not sep or not start.isdigit() or not end.isdigit() or int(end) < int(start):
        raise RangeInvalid({"content_range": value[:100]}, message="malformed Content-Range")
    return int(start), int(end)

