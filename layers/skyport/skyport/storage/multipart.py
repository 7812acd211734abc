"""Writing one request's body into an upload's S3 multipart upload (``PartWriter``).

Bytes go to S3 while they arrive, in parts of at least ``min_part_size`` (S3's rule
for every part but the last). What a request leaves over, less than that (its
"remainder"), is kept in one of two ways:

- **a short last part**, at the end of an upload's first request when it is a
  PATCH without ``Content-Range`` that filled at least one part: a client
  streaming the whole blob (docker, podman, skopeo), whose empty closing PUT
  then only has to complete the multipart upload. Such a push costs
  ceil(size/part) + 2 S3 calls and reads nothing back. The session records the
  bet: ``tail_size`` is the short part's size, the last of ``part_etags``, and
  there is no tail object (``UploadSession.short_last_part``).
- **a tail object** (``keys.upload_tail_object``) otherwise: after a chunk
  with ``Content-Range`` (another chunk most likely follows), after any later
  request, or when no part was filled (the whole blob is under 5 MiB). The next
  chunk reads it back first, so chunks of any size coalesce into valid parts;
  an empty closing PUT puts it in server-side (UploadPartCopy as the last part,
  or CopyObject when it is the whole blob), without reading it back.

Folding (the one word this module invents): putting a multipart upload that ended
in a short last part in front of a new one, server-side. If more bytes follow a
short last part after all, it cannot stay where it is (it would no longer be
last), and it cannot be read back while its multipart upload is open. At the end
of that request, once its body is in and checked, the old multipart upload is
completed at the blob's key (the only key S3 completes it at) as a staging object,
copied server-side into the first parts of a new multipart upload on the same key
(UploadPartCopy, at most 5 GiB a part; the staging object is at least one full
part, so never too small), and deleted before the session is saved. That costs up
to 4 S3 calls more than a tail object would have, at most once per upload, and no
byte comes back through the registry. The SHA-256 state covers every byte once:
nothing folded, kept as a tail or read back is hashed again.

The writer works on its own copy of the session; the service (``skyport.uploads``)
saves it, or on failure calls :meth:`PartWriter.abandon`, which removes what this
request wrote to S3.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable

from ..concurrency import run_blocking, start_blocking
from ..config import Settings
from ..digest import ResumableHash
from ..errors import PayloadTooLarge
from . import keys
from .ports import BlobRecord, ObjectStore, UploadSession

MAX_PARTS = 10_000  # S3 multipart limit
MAX_COPY_PART = 5 * 1024**3  # S3's largest part, also for UploadPartCopy
ByteStream = AsyncIterable[bytes]


def body_too_large(limit: int) -> PayloadTooLarge:
    # Behind Lambda the client's only way forward is smaller requests: say so.
    return PayloadTooLarge(
        {"limit": limit},
        message=f"request body larger than {limit} bytes, the most one request may carry here: "
        f"push the blob in chunks (PATCH with Content-Range) of at most {limit} bytes",
    )


def copy_ranges(size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges that copy ``size`` bytes as parts of at most MAX_COPY_PART,
    near-equal so none is small (each is more than half of MAX_COPY_PART when several)."""
    count = max(1, -(-size // MAX_COPY_PART))
    bounds = [size * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


class PartWriter:
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
        # The stored remainder (tail or short part) is dealt with when the first byte
        # arrives: an empty body (the usual closing PUT) leaves it where it is.
        self._body_started = False
        # One part uploads while the next one fills: network and body overlap.
        self._in_flight: asyncio.Future | None = None
        self._started_multipart = False  # by this request: a failure must abort it
        self._written_tail: str | None = None  # by this request: a failure must delete it
        # Names this request's tail objects (keys.upload_tail_object): a tail at the same
        # offset written by another request (one that took over an expired lease, or one
        # that lost the lease to it) is a different object, so neither overwrites the
        # tail the stored session names, nor deletes it when it fails.
        self._writer = secrets.token_hex(6)
        # A multipart upload ending in a short part, to fold into this request's one:
        # (its id, its part ETags, its size); parts 1..k of the new upload wait for it.
        self._fold_from: tuple[str, list[str], int] | None = None
        # Set once this request completed the stored session's multipart upload (the
        # fold's first step): from then on the stored session names an upload that is
        # gone, and only the new state (or none) is valid.
        self.stored_upload_gone = False
        # blob_key holds the fold's staging object, which this request must delete.
        self._owns_staging_object = False
        # This request called what makes the blob's object at blob_key from S3 state only
        # it knows (a PutObject, a CopyObject, or the completion of a multipart upload it
        # started): if that call fails, its answer maybe lost, no session names the
        # object it may have made, so a failure must delete it.
        self._makes_blob_object = False

    async def _start_body(self) -> None:
        """First byte of the body: pick up the remainder the stored session kept."""
        self._body_started = True
        session = self.session
        if session.short_last_part and session.multipart_id:
            # Bytes follow a part uploaded short: it has to stop being the last one.
            reserved = len(copy_ranges(session.offset))
            self._fold_from = (session.multipart_id, list(session.part_etags), session.offset)
            session.multipart_id = None  # a new one starts with the first part it needs
            session.part_etags = [""] * reserved  # filled by _fold
            session.tail_size = 0
        elif session.tail_key and session.tail_size:
            self.buffer += await run_blocking(self._objects.read, session.tail_key, may_be_missing=True)

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
            if not self._body_started:
                await self._start_body()
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
            session.multipart_id = await run_blocking(self._objects.start_multipart, session.blob_key)
            self._started_multipart = True
        return session.multipart_id

    async def _send_part(self, data: bytes) -> None:
        session = self.session
        multipart_id = await self._start_multipart()
        await self.drain()
        number = len(session.part_etags) + 1
        if number > MAX_PARTS:
            raise PayloadTooLarge(message="blob exceeds the largest upload this registry accepts")
        self._in_flight = start_blocking(
            self._objects.upload_part, session.blob_key, multipart_id, number, data
        )

    async def drain(self) -> None:
        """Wait for the part in flight, if any, and record its ETag."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self.session.part_etags.append(await future)

    async def _fold(self) -> None:
        """Fold the multipart upload that ended in a short part in front of this
        request's one: complete the old upload at the blob's key (the staging object),
        then copy it into the parts reserved for it."""
        if self._fold_from is None:
            return
        old_id, old_etags, size = self._fold_from
        session = self.session
        multipart_id = await self._start_multipart()
        await run_blocking(self._objects.complete_multipart, session.blob_key, old_id, old_etags)
        self._fold_from = None
        self.stored_upload_gone = self._owns_staging_object = True
        copied = await asyncio.gather(
            *(
                start_blocking(
                    self._objects.copy_part,
                    session.blob_key,
                    multipart_id,
                    number,
                    session.blob_key,
                    first,
                    last,
                )
                for number, (first, last) in enumerate(copy_ranges(size), start=1)
            ),
            return_exceptions=True,
        )  # all settled before a failure is raised
        for result in copied:
            if isinstance(result, BaseException):
                raise result
        session.part_etags[: len(copied)] = copied

    async def _delete_staging_object(self) -> None:
        if self._owns_staging_object:
            await run_blocking(self._objects.delete, self.session.blob_key)
            self._owns_staging_object = False

    async def abandon(self) -> None:
        """The request failed: remove what it wrote to S3 (best effort, each)."""
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
                await run_blocking(self._objects.abort_multipart, session.blob_key, session.multipart_id)
            except Exception:  # noqa: BLE001
                pass
        for key, mine in (
            (self._written_tail, True),
            (session.blob_key, self._owns_staging_object or self._makes_blob_object),
        ):
            if key and mine:
                try:
                    await run_blocking(self._objects.delete, key)
                except Exception:  # noqa: BLE001
                    pass
        self._written_tail, self._owns_staging_object, self._makes_blob_object = None, False, False

    async def end_chunk(self, streamed: bool) -> str | None:
        """End of a PATCH: flush what makes a part, keep the remainder as a short last
        part (``streamed``: no Content-Range, the whole blob most likely) or as a tail
        object, fold if needed, and bring the session's offset and hash state up to date.
        Returns the tail object the stored state pointed to, now stale."""
        session = self.session
        if not self._body_started:
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
            session.tail_key = keys.upload_tail_object(session.upload_id, end, self._writer)
            # Ours to delete on failure from before the call: a put that fails may
            # have stored the object all the same (its answer lost).
            self._written_tail = session.tail_key
            await run_blocking(self._objects.put, session.tail_key, bytes(self.buffer))
        self.buffer.clear()
        await self._fold()
        await self._delete_staging_object()  # before the save: a crash leaks no staging object then
        session.offset = end
        session.hash_state = self.hash.state()
        return stale_tail if stale_tail != session.tail_key else None

    async def complete(self) -> BlobRecord:
        """End of the upload: the last part, then CompleteMultipartUpload (no copy of
        the blob; at most the sub-5 MiB tail is copied, server-side)."""
        session = self.session
        size = session.offset + self.received
        if not self._body_started and session.tail_key and session.tail_size:
            # Empty closing PUT after chunks: the tail object goes in without a read-back.
            if session.multipart_id is None:
                self._makes_blob_object = True
                await run_blocking(self._objects.copy, session.tail_key, session.blob_key)
            else:
                session.part_etags.append(
                    await run_blocking(
                        self._objects.copy_part,
                        session.blob_key,
                        session.multipart_id,
                        len(session.part_etags) + 1,
                        session.tail_key,
                        None,
                        None,
                    )
                )
                await run_blocking(
                    self._objects.complete_multipart,
                    session.blob_key,
                    session.multipart_id,
                    session.part_etags,
                )
        elif session.multipart_id is None and self._fold_from is None:
            # Small blob: everything is in memory, one PutObject.
            self._makes_blob_object = True
            await run_blocking(self._objects.put, session.blob_key, bytes(self.buffer))
        else:
            if self.buffer:
                await self._send_part(bytes(self.buffer))
            await self.drain()
            await self._fold()
            # The stored session's own multipart upload is left as it is when its completion
            # fails: the retry completes it again, at the same key.
            self._makes_blob_object = self._started_multipart
            await run_blocking(
                self._objects.complete_multipart, session.blob_key, session.multipart_id, session.part_etags
            )
        # The blob is at blob_key now (over the staging object, if any).
        self.buffer.clear()
        self._started_multipart, self._owns_staging_object, self._makes_blob_object = False, False, False
        return BlobRecord(digest="", size=size, key=session.blob_key)
