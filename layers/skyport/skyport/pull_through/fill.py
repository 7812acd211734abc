"""The fill: a blob copied from upstream into S3, off the client's request (issue 13).

A blob GET that misses the cache starts a fill and answers at once (blobs.py). The fill:

1. **De-duplicated**: a lease item per repository and digest (``CACHE_FILL#<digest> /
   REPO#<name>``), taken by a conditional PutItem (FILL_LEASE_FREE) before anything is
   launched, so a hundred concurrent misses launch one copy. The lease lasts a fill's
   longest run (LEASE_SECONDS, above Lambda's 15 minutes); one that expired (its fill
   died) is taken over by the next miss. The fill deletes it when done, success or not.
2. **Launched**: deployed, the API invokes CacheFillFunction asynchronously
   (InvocationType=Event: the request does not wait; Lambda retries a failed run twice);
   locally (``skyport serve``, tests) a thread pool of the process runs it.
3. **Copied**: when another repository already holds the blob, it is linked (no bytes
   move: BlobService.mount). Else upstream's GET is followed, its redirect to storage
   fetched without our credentials, and the body streamed into an S3 multipart upload in
   parts of settings.part_size (memory: one part), hashed as it streams.
4. **Verified, then registered**: only when the sha256 of what was copied is the digest is
   the blob recorded and linked into the repository, through BlobService.register, the
   path a push takes (usage, GC and events see it like pushed content). A mismatch aborts
   the multipart upload; nothing is recorded, and it is logged. So a blob served from S3
   has been verified (distribution-spec: content is addressed by its digest).

A blob larger than one invocation can copy (15 minutes: tens of GiB at S3's speeds
from most upstreams, but an upstream throttling us may not allow it) ends with the
function's timeout: the multipart upload is left for the bucket's abort rule, the lease
expires, and clients keep being redirected to the upstream, which serves it (README).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..blobs import BlobService
from ..config import Settings
from ..errors import BlobUnknown
from ..storage import keys
from ..storage.ports import BlobRecord, ObjectStore, StorageUnavailable
from .rules import CacheRules, CacheTarget
from .upstream import UpstreamDenied, UpstreamDown, Upstreams, check_status, finish

logger = logging.getLogger("skyport.pull_through")

# Longer than a Lambda invocation can run (900 s): a live fill is never taken over.
LEASE_SECONDS = 960
FILLED, PRESENT, LINKED, MISMATCH, GONE, FAILED = "filled", "present", "linked", "mismatch", "gone", "failed"


class FillLeases(Protocol):
    def take_fill_lease(self, repository: str, digest: str, owner: str, now: int, seconds: int) -> bool: ...
    def release_fill_lease(self, repository: str, digest: str, owner: str) -> None: ...


class FillLauncher(Protocol):
    def launch(self, repository: str, digest: str, owner: str) -> None: ...


class ThreadFills:
    """The fill's local twin: ``run`` in a background thread of this process."""

    def __init__(self, run: Callable[[str, str, str], str], workers: int = 4) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="skyport-cache-fill")
        self.launched = 0
        self.outcomes: dict[str, str] = {}  # the last outcome per repository@digest
        # Every outcome counted: a miss that arrives as a fill ends takes the freed lease
        # and launches again, to find the blob PRESENT; what is de-duplicated is the copy.
        self.tally: Counter[str] = Counter()
        self._lock = threading.Lock()

    def launch(self, repository: str, digest: str, owner: str) -> None:
        with self._lock:
            self.launched += 1
        self._pool.submit(self._each, repository, digest, owner)

    def _each(self, repository: str, digest: str, owner: str) -> None:
        try:
            outcome = self._run(repository, digest, owner)
        except Exception as error:  # noqa: BLE001 - reported through outcomes, like a Lambda error
            logger.exception("cache fill of %s in %s failed", digest, repository)
            outcome = f"error: {type(error).__name__}"
        with self._lock:
            if len(self.outcomes) >= 1000:
                self.outcomes.clear()
            self.outcomes[f"{repository}@{digest}"] = outcome
            self.tally[outcome] += 1


class LambdaFills:
    """Deployed: CacheFillFunction, invoked with InvocationType=Event."""

    def __init__(self, client: Any, function_name: str) -> None:
        self._client = client
        self._function = function_name

    def launch(self, repository: str, digest: str, owner: str) -> None:
        import json

        from botocore.exceptions import BotoCoreError, ClientError

        payload = {"repository": repository, "digest": digest, "lease_owner": owner}
        try:
            self._client.invoke(
                FunctionName=self._function, InvocationType="Event", Payload=json.dumps(payload).encode()
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"Lambda invoke: {error}") from error


class BlobFill:
    def __init__(
        self,
        objects: ObjectStore,
        blobs: BlobService,
        leases: FillLeases,
        rules: CacheRules,
        upstreams: Upstreams,
        settings: Settings,
        launcher: FillLauncher | None = None,
    ) -> None:
        self._objects = objects
        self._blobs = blobs
        self._leases = leases
        self._rules = rules
        self._upstreams = upstreams
        self._settings = settings
        self.launcher = launcher

    def start(self, repository: str, digest: str) -> bool:
        """Launch a fill of ``digest`` into ``repository`` unless one runs; True if launched."""
        owner = secrets.token_hex(8)
        if not self._leases.take_fill_lease(repository, digest, owner, int(time.time()), LEASE_SECONDS):
            return False
        assert self.launcher is not None
        try:
            self.launcher.launch(repository, digest, owner)
        except Exception:
            self._leases.release_fill_lease(repository, digest, owner)
            raise
        return True

    def run(self, repository: str, digest: str, owner: str | None = None) -> str:
        """Copy ``digest`` of ``repository``'s upstream into S3 and link it (module
        docstring); the outcome, one of FILLED, PRESENT, LINKED, MISMATCH, GONE, FAILED."""
        try:
            target = self._rules.target(repository)
            if target is None:
                return GONE  # the rule was removed since the miss
            try:
                self._blobs.stat(repository, digest)
                return PRESENT
            except BlobUnknown:
                pass
            if self._blobs.mount(repository, digest, None) is not None:
                return LINKED
            return self._copy(target, digest)
        finally:
            if owner is not None:
                self._leases.release_fill_lease(repository, digest, owner)

    def _copy(self, target: CacheTarget, digest: str) -> str:
        try:
            response = self._upstreams.open_blob(target, digest, for_fill=True)
        except (UpstreamDown, UpstreamDenied) as error:
            logger.warning("cache fill of %s from %s failed: %s", digest, target.rule.host, error)
            return FAILED
        try:
            check_status(response, f"GET blob {digest}")
            if response.status != 200:
                logger.warning("cache fill of %s: upstream answered %s", digest, response.status)
                return FAILED
            return self._stream(target, digest, response)
        except (UpstreamDown, UpstreamDenied) as error:
            logger.warning("cache fill of %s from %s failed: %s", digest, target.rule.host, error)
            return FAILED
        finally:
            finish(response)

    def _stream(self, target: CacheTarget, digest: str, response: Any) -> str:
        algorithm, _, expected = digest.partition(":")
        hasher = hashlib.new(algorithm)
        key = keys.blob_object(str(uuid.uuid4()))
        part_size = self._settings.part_size
        buffer = bytearray()
        multipart_id: str | None = None
        etags: list[str] = []
        size = 0
        try:
            for chunk in response.stream(1024 * 1024):
                hasher.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= part_size:
                    if multipart_id is None:
                        multipart_id = self._objects.start_multipart(key)
                    etags.append(
                        self._objects.upload_part(
                            key, multipart_id, len(etags) + 1, bytes(buffer[:part_size])
                        )
                    )
                    del buffer[:part_size]
            if hasher.hexdigest() != expected:
                logger.error(
                    "cache fill of %s from %s refused: the bytes hash to %s:%s; nothing stored",
                    digest,
                    target.rule.host,
                    algorithm,
                    hasher.hexdigest(),
                )
                if multipart_id is not None:
                    self._objects.abort_multipart(key, multipart_id)
                    multipart_id = None
                return MISMATCH
            if multipart_id is None:
                self._objects.put(key, bytes(buffer))
            else:
                if buffer:
                    etags.append(self._objects.upload_part(key, multipart_id, len(etags) + 1, bytes(buffer)))
                self._objects.complete_multipart(key, multipart_id, etags)
                multipart_id = None
        except BaseException:
            if multipart_id is not None:
                self._objects.abort_multipart(key, multipart_id)
            raise
        self._blobs.register(target.repository, BlobRecord(digest=digest, size=size, key=key))
        logger.info("cache fill of %s into %s: %d bytes", digest, target.repository, size)
        return FILLED
