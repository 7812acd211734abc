"""UploadService driven directly, on the in-memory storage ports (tests/fakes.py), with
faults injected at every storage call of a PATCH or a PUT: the fold, the lease, and
what a failure or a crash leaves behind.

After a failed request the stored session is unchanged (and resumable once its lease,
if it outlived the request, times out) or gone with everything it kept; no stray
multipart upload, tail or staging object is left; the client's retry (or, for a gone
session, its new upload) ends with the blob at the right digest. Parts are 64 KiB
here (the fakes enforce the minimum given to them, as S3 enforces 5 MiB)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from fakes import FaultPlan, FaultTally, InjectedFault, MemoryStorage
from skyport.blobs import BlobService
from skyport.config import Settings
from skyport.errors import BlobUploadUnknown, RegistryError, UploadBusy
from skyport.storage.ports import StorageUnavailable, UploadSession
from skyport.uploads import UploadService

KiB = 1024
PART = 64 * KiB
LEASE = 900
REPO = "team/app"
SETTINGS = Settings(bucket="-", table="-", part_size=PART, min_part_size=PART, upload_lease_seconds=LEASE)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunks(data: bytes, size: int = 16 * KiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Client:
    """A registry client's view: one upload, sent as steps; the clock it runs under."""

    storage: MemoryStorage
    now: list[float] = field(default_factory=lambda: [1_000_000.0])

    def __post_init__(self) -> None:
        blobs = BlobService(self.storage.objects, self.storage.blobs, 60)
        self.service = UploadService(
            self.storage.objects, self.storage.sessions, blobs, SETTINGS, clock=lambda: self.now[0]
        )

    def run(self, step: Step, upload_id: str) -> object:
        if step.kind == "patch":
            return asyncio.run(self.service.append(REPO, upload_id, chunks(step.data), step.range))
        return asyncio.run(self.service.finish(REPO, upload_id, step.digest, chunks(step.data), step.range))


@dataclass
class Step:
    kind: str  # "patch" or "put"
    data: bytes
    range: tuple[int, int] | None = None
    digest: str = ""


def plan_upload(flavour: str, data: bytes) -> list[Step]:
    """How each kind of client sends ``data`` after its POST."""
    if flavour == "streamed":  # docker, podman, skopeo: one PATCH, an empty PUT
        return [Step("patch", data), Step("put", b"", digest=sha256(data))]
    if flavour == "chunks":  # Content-Range chunks smaller than a part: tails coalesce
        third = len(data) // 3
        return [
            Step("patch", data[:third], (0, third - 1)),
            Step("patch", data[third:], (third, len(data) - 1)),
            Step("put", b"", digest=sha256(data)),
        ]
    if flavour == "fold":  # a short last part, then more: the upload is folded
        first = PART + 10 * KiB
        return [
            Step("patch", data[:first]),
            Step("patch", data[first : first + 20 * KiB], (first, first + 20 * KiB - 1)),
            Step("put", data[first + 20 * KiB :], digest=sha256(data)),
        ]
    raise ValueError(flavour)


FLAVOURS = ["streamed", "chunks", "fold"]
DATA = os.urandom(2 * PART + 30 * KiB)


def start(client: Client) -> str:
    return client.service.start(REPO).upload_id


def assert_no_strays(
    storage: MemoryStorage, allowed: set[str] = frozenset(), *, unknown_multipart: bool = False
) -> None:
    """Nothing in S3 but what a stored session names (its multipart upload, its tail,
    and at its blob key the object its multipart upload was completed as, which a
    retry completes again), registered blobs, and ``allowed``. ``unknown_multipart``:
    one multipart upload whose id never reached the service may be left (to the
    bucket's lifecycle rule)."""
    sessions = [s.session for s in storage.sessions.items.values()]
    named = {key for s in sessions for key in (s.tail_key, s.blob_key) if key}
    multiparts = {s.multipart_id for s in sessions if s.multipart_id}
    registered = {record.key for record in storage.blobs.blobs.values()}
    strays = set(storage.objects.uploads) - multiparts
    assert len(strays) <= (1 if unknown_multipart else 0), strays
    assert set(storage.objects.objects) <= named | registered | set(allowed)


def assert_blob(storage: MemoryStorage, data: bytes) -> None:
    record = storage.blobs.links[(REPO, sha256(data))]
    assert record.size == len(data)
    assert hashlib.sha256(storage.objects.objects[record.key]).hexdigest() == sha256(data)[7:]


def finish_upload(client: Client, steps: list[Step], upload_id: str) -> None:
    for step in steps:
        client.run(step, upload_id)


def test_every_flavour_completes_without_faults_and_folds_once():
    for flavour in FLAVOURS:
        storage = MemoryStorage(min_part=PART)
        client = Client(storage)
        finish_upload(client, plan_upload(flavour, DATA), start(client))
        assert_blob(storage, DATA)
        assert storage.sessions.items == {} and storage.objects.uploads == {}
        assert_no_strays(storage)
        # The fold completes the short-last-part upload once and copies it in server-side.
        folded = flavour == "fold"
        assert storage.plan.count("complete_multipart") == (2 if folded else 1)
        # A tail is read back by the next chunk, or copied in by the empty closing PUT.
        assert storage.plan.count("copy_part") == (0 if flavour == "streamed" else 1)
        assert storage.plan.count("read") == (0 if flavour == "streamed" else 1)


def fault_cases() -> list[tuple[str, int, int]]:
    """(flavour, step, nth call of that step) for every storage call of every step."""
    cases = []
    for flavour in FLAVOURS:
        storage = MemoryStorage(min_part=PART)
        client = Client(storage)
        upload_id = start(client)
        for index, step in enumerate(plan_upload(flavour, DATA)):
            before = len(storage.plan.calls)
            client.run(step, upload_id)
            cases += [(flavour, index, n) for n in range(1, len(storage.plan.calls) - before + 1)]
    return cases


CASES = fault_cases()


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest):
    counts = FaultTally("upload faults on the fakes")
    yield counts
    counts.print(request.config)


@pytest.mark.parametrize("kind", ["error", "throttle", "timeout", "crash"])
@pytest.mark.parametrize(
    ("flavour", "index", "nth"), CASES, ids=[f"{f}-step{i}-call{n}" for f, i, n in CASES]
)
def test_a_fault_at_any_call_of_a_request_leaves_a_resumable_or_removed_session(
    flavour, index, nth, kind, tally
):
    storage = MemoryStorage(FaultPlan(), min_part=PART)
    client = Client(storage)
    steps = plan_upload(flavour, DATA)
    upload_id = start(client)
    finish_upload(client, steps[:index], upload_id)
    stored = storage.sessions.get(upload_id)
    registered = set(storage.blobs.blobs)

    if kind == "crash":
        storage.plan.crash(nth=nth)
    else:
        storage.plan.fail(nth=nth, kind=kind)
    outcome: object
    try:
        outcome = client.run(steps[index], upload_id)
    except (RegistryError, StorageUnavailable) as error:
        outcome = error
    assert storage.plan.injected, "the fault was injected"
    tally.operations += 1
    tally.faults += len(storage.plan.injected)
    storage.plan.clear()
    after = storage.sessions.get(upload_id)

    if not isinstance(outcome, Exception):
        # The fault hit a call whose failure the request rides out (a timeout whose
        # write had landed, a best-effort delete): it succeeded, and says so.
        rest = steps[index + 1 :]
    elif after is None:
        # Removed: the client hears the upload is unknown, or an error to retry on, and
        # a retry finds it unknown; it starts over. Never a half-registered blob.
        assert set(storage.blobs.blobs) == registered or steps[index].kind == "put"
        upload_id, rest = start(client), steps
    else:
        assert after == stored, "a failed request leaves the stored session as it was"
        client.now[0] += LEASE + 1  # a lease the failed request could not give back expires
        rest = steps[index:]
    # What a failed request may leave: the completed blob of a session a PUT removed
    # before registering it; an object whose delete was the call that failed
    # (best effort: tails expire by the lifecycle rule); a multipart upload whose
    # creation timed out after S3 made it (its id never came back).
    faulted = storage.plan.injected[0].split(":")[0]
    allowed = _unregistered_blob_keys(stored, after) | (
        {key for key in storage.objects.objects if key.startswith("uploads/")}
        if faulted == "ObjectStore.delete"
        else set()
    )
    unknown_multipart = faulted == "ObjectStore.start_multipart" and kind == "timeout"
    if kind != "crash":
        # A crashed request ran no clean-up: what it wrote is left to the lifecycle
        # rules (multipart uploads and tails expire); the retry must still succeed.
        assert_no_strays(storage, allowed, unknown_multipart=unknown_multipart)
    try:
        finish_upload(client, rest, upload_id)
    except BlobUploadUnknown:
        # The stored session named a multipart upload that is gone: completed by a
        # request whose answer was lost or that failed right after, or by a crash past
        # the fold's deletion of its staging object. The retry removed the session (and
        # what it kept: uploads.py); the client starts over.
        assert storage.sessions.get(upload_id) is None and stored is not None
        if kind == "crash" or (faulted == "ObjectStore.complete_multipart" and kind == "timeout"):
            # The object the completion made at the old blob key stays: the crashed
            # request ran no clean-up, and a request whose completion of the stored
            # session's upload lost its answer cannot know it made an object (the retry
            # could have completed it again). Every other failure deletes it (uploads.py).
            allowed |= {stored.blob_key}
        finish_upload(client, steps, start(client))
    try:
        assert_blob(storage, DATA)
    except (AssertionError, KeyError):
        tally.lost_or_corrupt += 1
        raise
    assert storage.sessions.items == {}
    if kind != "crash":
        assert_no_strays(storage, allowed, unknown_multipart=unknown_multipart)


def _unregistered_blob_keys(stored: UploadSession | None, after: UploadSession | None) -> set[str]:
    """What a PUT that removed its session (uploads.py: before registering the blob)
    and then failed may leave: the session's tail when its deletion did not come (tails
    expire by the lifecycle rule). Not the completed, unregistered blob: its failure
    path deletes it."""
    if stored is not None and after is None:
        return {stored.tail_key} if stored.tail_key else set()
    return set()


AFTER_COMPLETION = [
    ("UploadSessions.delete", "error"),
    ("UploadSessions.delete", "timeout"),
    ("BlobIndex.add_blob", "error"),
    ("BlobIndex.add_blob", "timeout"),  # recorded: the object is the blob, it stays
    ("BlobIndex.link", "error"),
]
# The completion's answer lost is only known to have made an object nothing names when
# this PUT started the multipart upload; a stored session's upload is completed again
# by the retry (see the fault test above for what that leaves).
MADE_CASES = [("whole-put", "ObjectStore.complete_multipart", "timeout")] + [
    (flavour, *fault) for flavour in ("whole-put", "streamed") for fault in AFTER_COMPLETION
]


@pytest.mark.parametrize(("flavour", "method", "kind"), MADE_CASES)
def test_a_put_that_made_the_blob_and_then_failed_leaves_no_object_behind(flavour, method, kind):
    """The closing PUT made the blob's object at blobs/<upload-id>, then failed: nothing
    would reference that object and no lifecycle rule removes it, so the failure path
    deletes it (unless the blob was recorded at it after all). The client's retry, or
    its new upload, ends with the blob."""
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)
    steps = (
        [Step("put", DATA, digest=sha256(DATA))] if flavour == "whole-put" else plan_upload("streamed", DATA)
    )
    finish_upload(client, steps[:-1], upload_id)
    storage.plan.fail(method, kind=kind)
    with pytest.raises(StorageUnavailable):
        client.run(steps[-1], upload_id)
    storage.plan.clear()
    recorded = {record.key for record in storage.blobs.blobs.values()}
    assert set(storage.objects.objects) == recorded
    assert storage.objects.uploads == {}
    try:
        client.run(steps[-1], upload_id)
    except BlobUploadUnknown:
        finish_upload(client, steps, start(client))
    assert_blob(storage, DATA)
    assert storage.sessions.items == {}
    assert_no_strays(storage)
    assert len(storage.objects.objects) == 1


# --- the lease ----------------------------------------------------------------------------


class Gate:
    """A body that sends its first half, then waits until opened."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        half = len(self.data) // 2
        yield self.data[:half]
        self.waiting.set()
        await self.opened.wait()
        yield self.data[half:]


def test_two_writers_one_lease():
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)
    first, second = DATA[:PART], DATA[PART:]

    async def scenario() -> None:
        gate = Gate(first)
        writing = asyncio.create_task(client.service.append(REPO, upload_id, gate, (0, len(first) - 1)))
        await gate.waiting.wait()
        with pytest.raises(UploadBusy):
            await client.service.append(REPO, upload_id, chunks(second), (len(first), len(DATA) - 1))
        gate.opened.set()
        assert (await writing).offset == len(first)
        await client.service.append(REPO, upload_id, chunks(second), (len(first), len(DATA) - 1))
        await client.service.finish(REPO, upload_id, sha256(DATA), chunks(b""))

    asyncio.run(scenario())
    assert_blob(storage, DATA)
    assert_no_strays(storage)


def test_a_lease_past_its_time_is_taken_over_and_the_first_writer_loses():
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)
    other = os.urandom(len(DATA))

    async def scenario() -> None:
        gate = Gate(DATA)
        slow = asyncio.create_task(client.service.append(REPO, upload_id, gate))
        await gate.waiting.wait()
        client.now[0] += LEASE + 1  # the slow writer's lease times out
        taken = await client.service.append(REPO, upload_id, chunks(other[: PART + 5]), (0, PART + 4))
        assert taken.offset == PART + 5
        gate.opened.set()
        with pytest.raises(UploadBusy):
            await slow  # its save finds the lease gone: nothing it sent counts
        await client.service.append(REPO, upload_id, chunks(other[PART + 5 :]), (PART + 5, len(other) - 1))
        await client.service.finish(REPO, upload_id, sha256(other), chunks(b""))

    asyncio.run(scenario())
    assert_blob(storage, other)
    assert_no_strays(storage)
    assert (REPO, sha256(DATA)) not in storage.blobs.links


@pytest.mark.parametrize("loser_cleans_up", [True, False], ids=["clean-up", "clean-up-fails"])
def test_a_writer_that_lost_its_lease_never_touches_the_new_writers_tail(loser_cleans_up):
    """Two requests write the same chunk length at the same offset: the first stalls past
    its lease, the second takes the upload over and saves. The first then writes its tail
    and fails to save. Each request's tail is its own object (keys.upload_tail_object), so
    the loser neither overwrites the tail the stored session names (the closing PUT would
    copy the loser's bytes in under the winner's digest) nor deletes it when it cleans up
    (the closing PUT would find the upload gone: BLOB_UPLOAD_UNKNOWN). The API suite's
    racing PATCHes hit the same case when moto lets both conditional claims through."""
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)
    slow_data, data = os.urandom(PART // 2), os.urandom(PART // 2)

    async def scenario() -> None:
        gate = Gate(slow_data)
        slow = asyncio.create_task(client.service.append(REPO, upload_id, gate, (0, len(slow_data) - 1)))
        await gate.waiting.wait()
        client.now[0] += LEASE + 1  # the slow writer's lease times out
        await client.service.append(REPO, upload_id, chunks(data), (0, len(data) - 1))
        if not loser_cleans_up:
            storage.plan.fail("ObjectStore.delete")  # its clean-up of its own tail fails
        gate.opened.set()
        with pytest.raises(UploadBusy):
            await slow
        await client.service.finish(REPO, upload_id, sha256(data), chunks(b""))

    asyncio.run(scenario())
    assert_blob(storage, data)
    assert storage.sessions.items == {}
    assert_no_strays(
        storage,
        {key for key in storage.objects.objects if key.startswith("uploads/")}
        if not loser_cleans_up
        else set(),
    )


def test_a_lease_lost_at_save_to_a_cancel_removes_everything():
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)

    async def scenario() -> None:
        gate = Gate(DATA)
        writing = asyncio.create_task(client.service.append(REPO, upload_id, gate))
        await gate.waiting.wait()
        client.service.cancel(REPO, upload_id)
        gate.opened.set()
        with pytest.raises(BlobUploadUnknown):
            await writing

    asyncio.run(scenario())
    assert storage.sessions.items == {} and storage.objects.uploads == {}
    assert storage.objects.objects == {}


def test_a_save_whose_answer_is_lost_counts_once():
    """The save took effect, then the answer was lost: the request succeeded, and the
    tail it wrote (named by the stored state) stays."""
    storage = MemoryStorage(min_part=PART)
    client = Client(storage)
    upload_id = start(client)
    third = len(DATA) // 3
    client.run(Step("patch", DATA[:third], (0, third - 1)), upload_id)
    storage.plan.fail("UploadSessions.save", kind="timeout")
    session = client.run(Step("patch", DATA[third : 2 * third], (third, 2 * third - 1)), upload_id)
    assert storage.plan.injected == ["UploadSessions.save: timeout"]
    assert storage.sessions.get(upload_id) == session
    client.run(Step("put", DATA[2 * third :], (2 * third, len(DATA) - 1), sha256(DATA)), upload_id)
    assert_blob(storage, DATA)
    assert_no_strays(storage)


def test_fault_plan_counts_per_method_and_overall():
    plan = FaultPlan().fail("ObjectStore.put", nth=2).fail(nth=4, kind=InjectedFault("boom"))
    storage = MemoryStorage(plan)
    storage.objects.put("a", b"1")
    with pytest.raises(InjectedFault, match="injected error"):
        storage.objects.put("b", b"2")  # the 2nd put
    assert storage.objects.read("a") == b"1"
    with pytest.raises(InjectedFault, match="boom"):
        storage.objects.delete("a")  # the 4th call of any method
    assert "b" not in storage.objects.objects and "a" in storage.objects.objects
    assert plan.count() == 4 and plan.count("put") == 2
