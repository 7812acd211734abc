"""Blob uploads (distribution-spec "Pushing blobs": POST, PATCH, PUT, GET status, DELETE).

Bytes go to S3 as a multipart upload while they arrive. Parts are at least
``min_part_size`` (S3's rule for every part but the last); a request that
ends with less than that left over parks it as a "tail" object, which the
next request of the same upload reads back first — so chunks of any size
coalesce into valid parts. The SHA-256 state is saved with the session after
every request, so the closing PUT neither copies nor re-reads the blob.

One request at a time may write to an upload: it leases the session with a
conditional write and gives the lease back when it stores the new state. A
request that fails stores nothing, so the session stays as it was (stray
parts it uploaded are overwritten or dropped by the next writer; a stray
tail object has a name no session points to and expires).
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
    ObjectStore,
    UploadConflict,
    UploadMissing,
    UploadSession,
    UploadSessions,
)

MAX_PARTS = 10_000  # S3 multipart limit
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


class _PartWriter:
    """Hashes a request body and streams it into the session's multipart upload."""

    def __init__(self, objects: ObjectStore, session: UploadSession, settings: Settings) -> None:
        self._objects = objects
        self.session = session
        self._part_size = settings.part_size
        self._min_part = settings.min_part_size
        self._max_body = settings.max_request_body
        self.hash = ResumableHash(session.hash_algorithm, session.hash_state or None)
        self.buffer = bytearray()
        self.received = 0
        # One part uploads while the next one fills: network and body overlap.
        self._in_flight: asyncio.Future | None = None
        self._started_multipart = False  # by this request: a failure must abort it

    async def load_tail(self) -> None:
        if self.session.tail_key and self.session.tail_size:
            self.buffer += await _run(self._objects.read, self.session.tail_key)

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
            self.hash.update(chunk)
            self.buffer += chunk
            self.received += len(chunk)
            while len(self.buffer) >= self._part_size:
                part = bytes(memoryview(self.buffer)[: self._part_size])
                del self.buffer[: self._part_size]
                await self._send_part(part)

    async def _send_part(self, data: bytes) -> None:
        session = self.session
        if session.multipart_id is None:
            session.multipart_id = await _run(self._objects.start_multipart, session.blob_key)
            self._started_multipart = True
        await self.drain()
        number = len(session.part_etags) + 1
        if number > MAX_PARTS:
            raise PayloadTooLarge(message="blob exceeds the largest upload this registry accepts")
        self._in_flight = asyncio.ensure_future(
            _run(self._objects.upload_part, session.blob_key, session.multipart_id, number, data)
        )

    async def drain(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self.session.part_etags.append(await future)

    async def abandon(self) -> None:
        if self._in_flight is not None:
            try:
                await self._in_flight
            except Exception:  # noqa: BLE001 - the request already failed for another reason
                pass
            self._in_flight = None
        if self._started_multipart:
            # The stored session (if any) never learns of a multipart upload started by a
            # failed request: abort it now rather than leave its parts billed until the
            # bucket's lifecycle rule finds them.
            self._started_multipart = False
            try:
                session = self.session
                await _run(self._objects.abort_multipart, session.blob_key, session.multipart_id)
            except Exception:  # noqa: BLE001 - best effort; the lifecycle rule is the backstop
                pass

    async def park(self) -> str | None:
        """End of a PATCH: flush what makes a part, park the rest as the tail.
        Returns the tail object the previous state pointed to, now stale."""
        if len(self.buffer) >= self._min_part:
            await self._send_part(bytes(self.buffer))
            self.buffer.clear()
        await self.drain()
        session = self.session
        stale_tail = session.tail_key
        session.offset += self.received
        session.tail_key = None
        if self.buffer:
            session.tail_key = keys.upload_tail_object(session.upload_id, session.offset)
            await _run(self._objects.put, session.tail_key, bytes(self.buffer))
        session.tail_size = len(self.buffer)
        session.hash_state = self.hash.state()
        return stale_tail if stale_tail != session.tail_key else None

    async def complete(self) -> BlobRecord:
        """End of the upload: the last part, then CompleteMultipartUpload (no copy)."""
        session = self.session
        size = session.offset + self.received
        if session.multipart_id is None:
            # Small blob: everything is in memory, one PutObject.
            await _run(self._objects.put, session.blob_key, bytes(self.buffer))
        else:
            if self.buffer:
                await self._send_part(bytes(self.buffer))
            await self.drain()
            await _run(self._objects.complete_multipart, session.blob_key, session.multipart_id,
                       session.part_etags)
        self.buffer.clear()
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
        if session.multipart_id:
            self._objects.abort_multipart(session.blob_key, session.multipart_id)
        if session.tail_key:
            self._objects.delete(session.tail_key)

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
        session = await _run(self._claim, repository, upload_id, token, content_range, owner)
        writer = _PartWriter(self._objects, session, self._settings)
        try:
            await writer.load_tail()
            await writer.consume(body)
            self._check_length(writer, content_range)
            stale_tail = await writer.park()
            await _run(self._save, writer.session, token)
        except BaseException:
            await writer.abandon()
            await _run(self._sessions.release, upload_id, token)
            raise
        if stale_tail:
            await _run(self._objects.delete, stale_tail)
        return writer.session

    async def finish(self, repository: str, upload_id: str, digest: str, body: ByteStream,
                     content_range: tuple[int, int] | None = None, owner: str | None = None) -> BlobRecord:
        """PUT ?digest=: the optional last chunk, verification, and the blob."""
        expected = Digest.parse(digest)
        token = uuid.uuid4().hex
        session = await _run(self._claim, repository, upload_id, token, content_range, owner)
        if session.offset == 0 and session.hash_algorithm != expected.algorithm:
            # Nothing hashed yet: hash with the algorithm the client names.
            session = replace(session, hash_algorithm=expected.algorithm, hash_state=b"")
        writer = _PartWriter(self._objects, session, self._settings)
        try:
            await writer.load_tail()
            await writer.consume(body)
            self._check_length(writer, content_range)
            verified = writer.session.hash_algorithm == expected.algorithm
            if verified and writer.hash.digest() != expected:
                raise DigestInvalid({"digest": digest}, message="digest does not match the uploaded content")
            record = await writer.complete()
        except BaseException:
            await writer.abandon()
            await _run(self._sessions.release, upload_id, token)
            raise
        record = replace(record, digest=str(expected))
        if not verified:
            # Chunks were hashed as sha256 but the client names another
            # algorithm: the one case that re-reads the blob.
            await self._verify_by_reading(record, expected, upload_id, repository, token)
        stored = await _run(self._blobs.register, repository, record)
        try:
            await _run(self._sessions.delete, upload_id, repository, token)
        except UploadMissing:
            pass  # cancelled concurrently, but the blob is complete and registered: 201 holds
        if session.tail_key:
            await _run(self._objects.delete, session.tail_key)
        return stored

    async def _verify_by_reading(self, record: BlobRecord, expected: Digest, upload_id: str,
                                 repository: str, token: str) -> None:
        def read_digest() -> Digest:
            hasher = ResumableHash(expected.algorithm)
            for chunk in self._objects.stream(record.key):
                hasher.update(bytes(chunk))
            return hasher.digest()

        if await _run(read_digest) != expected:
            # The parts are spent in the completed object: the upload cannot go on.
            await _run(self._objects.delete, record.key)
            await _run(self._sessions.delete, upload_id, repository, token)
            raise DigestInvalid({"digest": str(expected)}, message="digest does not match the uploaded content")

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

