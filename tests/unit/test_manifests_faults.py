"""The rest of a push and the management operations, driven directly on the in-memory
storage ports (tests/fakes.py) with a fault at every storage call: an image push (its
blobs, then its manifest under a tag; the manifest body inline or in S3), an index
push, a tag move, a manifest delete by tag and by digest, a blob delete, a referrer push.

For each operation, each call k = 1..N of a fault-free run, each kind (an error, a
throttle, a timeout whose write took effect, a crash that fails every later call):

- the operation succeeds, or raises StorageUnavailable (UNAVAILABLE, 503: retry) or a
  4xx OCI error; never another exception;
- afterwards no half-written image is visible: every tag and every stored manifest
  is served whole (its body matches its digest, every blob it names is in the
  repository with its bytes, every child manifest is there, whole), every referrer
  listed is a stored manifest;
- what was committed before stays: each entry of the registry's state (tags,
  manifests, blob links, referrers, blob records) is as before the operation or as
  after a fault-free run of it, and an entry the operation does not touch is there;
- a retry without faults succeeds (a delete whose faulted attempt took effect hears
  the 404 of a thing already gone), ending in the fault-free run's state, with no
  S3 object but registered blobs and manifest bodies (unless the request crashed,
  whose leftovers the bucket's lifecycle rules take).

The run ends with one line: operations, faults injected, images lost or corrupt."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from fakes import FaultPlan, FaultTally, MemoryStorage
from oci import make_artifact, make_image, make_index, sha256
from skyport.blobs import BlobService
from skyport.config import Settings
from skyport.errors import BlobUnknown, ManifestUnknown, RegistryError
from skyport.manifests import ManifestService, parse_manifest
from skyport.referrers import ReferrerService
from skyport.storage.ports import ObjectMissing, StorageUnavailable
from skyport.uploads import UploadService

KiB = 1024
PART = 64 * KiB
REPO = "team/app"
KINDS = ["error", "throttle", "timeout", "crash"]

# One set of images for every case (each case starts from empty storage). A's second
# layer is bigger than a part, so its upload is a multipart one.
IMAGE_A = make_image((1000, PART + 5000))
IMAGE_B = make_image((2000,))
IMAGE_C = make_image((3000,))
INDEX, INDEX_TYPE = make_index([IMAGE_A, IMAGE_C])
ARTIFACT = make_artifact(IMAGE_A.manifest, blobs=(b"sbom " * 100,))
ORPHAN = b"a blob no manifest names" * 10


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


class World:
    """One registry on the fakes: the core services a request calls."""

    def __init__(self, plan: FaultPlan, inline_limit: int) -> None:
        self.storage = MemoryStorage(plan, min_part=PART)
        settings = Settings(
            bucket="-", table="-", part_size=PART, min_part_size=PART, inline_manifest_limit=inline_limit
        )
        storage = self.storage
        self.blobs = BlobService(storage.objects, storage.blobs, 60)
        self.uploads = UploadService(storage.objects, storage.sessions, self.blobs, settings)
        self.manifests = ManifestService(storage.objects, storage.manifests, settings)
        self.referrers = ReferrerService(storage.manifests, storage.objects)

    def push_blob(self, data: bytes) -> None:
        # POST ?digest= with the blob: the chunked paths have tests/unit/test_uploads_faults.py.
        asyncio.run(self.uploads.upload_whole(REPO, sha256(data), _body(data)))

    def push(self, blobs: list[bytes], manifest: bytes, media_type: str, reference: str) -> None:
        for blob in blobs:
            self.push_blob(blob)
        self.manifests.push(REPO, reference, media_type, manifest)

    def push_image(self, image, reference: str | None = None) -> None:
        self.push([image.config, *image.layers], image.manifest, image.media_type, reference or image.digest)

    # --- what is visible ---------------------------------------------------------------

    def state(self) -> dict[tuple, object]:
        """The registry's state as entries: each is committed or not, whole."""
        index, blobs = self.storage.manifests, self.storage.blobs
        state: dict[tuple, object] = {}
        state.update({("tag", r, t): m.digest for (r, t), m in index.tags.items()})
        state.update({("manifest", r, d): m.size for (r, d), m in index.manifests.items()})
        state.update({("referrer", r, s, d): m.digest for (r, s, d), m in index.referrers.items()})
        state.update({("link", r, d): b.size for (r, d), b in blobs.links.items()})
        state.update({("blob", d): b.size for d, b in blobs.blobs.items()})
        return state

    def broken_images(self) -> list[str]:
        """What a client would find broken, read through the services (faults off)."""
        broken = []
        index = self.storage.manifests
        for repo, tag in list(index.tags):
            broken += [f"tag {tag}: {why}" for why in self._manifest_problems(repo, tag)]
        for repo, digest in list(index.manifests):
            broken += [f"manifest {digest[:19]}: {why}" for why in self._manifest_problems(repo, digest)]
        for repo, subject, _digest in list(index.referrers):
            for descriptor in self.referrers.list(repo, subject).index["manifests"]:
                try:
                    self.manifests.fetch(repo, descriptor["digest"])
                except ManifestUnknown:
                    broken.append(f"referrer {descriptor['digest'][:19]} of {subject[:19]}: not stored")
        return broken

    def _manifest_problems(self, repo: str, reference: str) -> list[str]:
        try:
            record, body = self.manifests.fetch(repo, reference)
        except ManifestUnknown:
            return ["not stored"]
        except ObjectMissing:
            return ["body missing from S3"]
        if body is None or sha256(body) != record.digest:
            return ["body does not match its digest"]
        parsed = parse_manifest(body, record.media_type)
        problems = []
        for digest, size in parsed.blobs.items():
            try:
                blob, chunks = self.blobs.stream(repo, digest)
            except BlobUnknown:
                problems.append(f"blob {digest[:19]} missing")
                continue
            data = b"".join(chunks)
            if blob.size != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                problems.append(f"blob {digest[:19]} corrupt")
        for child in parsed.manifests:
            problems += [f"child {child[:19]}: {why}" for why in self._manifest_problems(repo, child)]
        return problems

    def strays(self) -> set[str]:
        """S3 objects that are neither a registered blob nor a stored manifest's body."""
        kept = {b.key for b in self.storage.blobs.blobs.values()}
        kept |= {m.body_key for m in self.storage.manifests.manifests.values() if m.body_key}
        return set(self.storage.objects.objects) - kept | set(self.storage.objects.uploads)


@dataclass(frozen=True)
class Operation:
    name: str
    setup: Callable[[World], None]
    run: Callable[[World], None]
    inline_limit: int = 128 * KiB
    # A retry of a delete whose faulted attempt took effect finds nothing to delete.
    gone_on_retry: tuple[type[RegistryError], ...] = ()


def _nothing(world: World) -> None:
    pass


def _image_a_tagged(world: World) -> None:
    world.push_image(IMAGE_A, "v1")


def _tag_move_setup(world: World) -> None:
    world.push_image(IMAGE_A, "v1")
    world.push_image(IMAGE_B)


def _index_setup(world: World) -> None:
    world.push_image(IMAGE_A)
    world.push_image(IMAGE_C)


def _blob_delete_setup(world: World) -> None:
    world.push_image(IMAGE_A, "v1")
    world.push_blob(ORPHAN)


OPERATIONS = [
    Operation("push", _nothing, lambda w: w.push_image(IMAGE_A, "v1")),
    # Bodies over the inline limit go to S3 first, then the index entries.
    Operation("push, manifest body in S3", _nothing, lambda w: w.push_image(IMAGE_A, "v1"), inline_limit=64),
    Operation("index push", _index_setup, lambda w: w.manifests.push(REPO, "multi", INDEX_TYPE, INDEX)),
    Operation(
        "tag move",
        _tag_move_setup,
        lambda w: w.manifests.push(REPO, "v1", IMAGE_B.media_type, IMAGE_B.manifest),
    ),
    Operation(
        "delete by tag",
        _image_a_tagged,
        lambda w: w.manifests.delete(REPO, "v1"),
        gone_on_retry=(ManifestUnknown,),
    ),
    Operation(
        "delete by digest",
        _image_a_tagged,
        lambda w: w.manifests.delete(REPO, IMAGE_A.digest),
        gone_on_retry=(ManifestUnknown,),
    ),
    Operation(
        "blob delete",
        _blob_delete_setup,
        lambda w: w.blobs.delete(REPO, sha256(ORPHAN)),
        gone_on_retry=(BlobUnknown,),
    ),
    Operation(
        "referrer push",
        _image_a_tagged,
        lambda w: w.push(
            [ARTIFACT.config, *ARTIFACT.layers], ARTIFACT.manifest, ARTIFACT.media_type, ARTIFACT.digest
        ),
    ),
]


def fresh(operation: Operation) -> World:
    world = World(FaultPlan(), operation.inline_limit)
    operation.setup(world)
    return world


def reference_run(operation: Operation) -> tuple[int, dict]:
    """Calls of a fault-free run, and the state it ends in."""
    world = fresh(operation)
    before = len(world.storage.plan.calls)
    operation.run(world)
    calls = len(world.storage.plan.calls) - before
    assert world.broken_images() == []
    return calls, world.state()


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest):
    counts = FaultTally("manifest, tag and delete faults on the fakes")
    yield counts
    counts.print(request.config)


def test_every_operation_runs_clean_and_does_what_it_says():
    for operation in OPERATIONS:
        calls, after = reference_run(operation)
        assert calls > 0
        world = fresh(operation)
        before = world.state()
        assert after != before, operation.name


@pytest.mark.parametrize("operation", OPERATIONS, ids=[o.name for o in OPERATIONS])
def test_a_fault_at_any_call_leaves_every_image_whole(operation, tally):
    calls, expected = reference_run(operation)
    problems: list[str] = []
    for nth in range(1, calls + 1):
        for kind in KINDS:
            case = f"{operation.name}, call {nth}, {kind}"
            world = fresh(operation)
            plan = world.storage.plan
            before = world.state()
            if kind == "crash":
                plan.crash(nth=nth)
            else:
                plan.fail(nth=nth, kind=kind)
            try:
                operation.run(world)
                outcome: BaseException | None = None
            except (StorageUnavailable, RegistryError) as error:
                outcome = error
            # Anything else propagates: a 500 to the client, which this test forbids.
            assert plan.injected, f"{case}: the fault was injected"
            faulted = plan.injected[0].split(":")[0]
            tally.operations += 1
            tally.faults += len(plan.injected)
            plan.clear()
            if isinstance(outcome, RegistryError) and not 400 <= outcome.status < 500:
                problems.append(f"{case}: {outcome!r}, neither a 4xx nor UNAVAILABLE")

            lost = _lost_or_corrupt(before, expected, world)
            if lost:
                tally.lost_or_corrupt += 1
                problems += [f"{case}, after the fault: {why}" for why in lost]

            try:
                operation.run(world)
            except operation.gone_on_retry:
                # A fault in the catalog clean-up after a delete (best effort) leaves the
                # delete done and answered: its retry rightly finds nothing.
                if outcome is None and faulted != "ManifestIndex.forget_repository_if_empty":
                    problems.append(f"{case}: it succeeded, yet the retry found nothing to delete")
            except (StorageUnavailable, RegistryError) as error:
                problems.append(f"{case}: the retry without faults failed: {error!r}")
                continue
            if world.state() != expected:
                problems.append(f"{case}: the retry ended elsewhere than a fault-free run")
            broken = world.broken_images()
            if broken:
                tally.lost_or_corrupt += 1
                problems += [f"{case}, after the retry: {why}" for why in broken]
            strays = world.strays()
            if faulted == "ObjectStore.start_multipart" and kind == "timeout":
                # S3 made the multipart upload, its id never came back: the bucket's
                # lifecycle rule aborts it.
                strays -= set(world.storage.objects.uploads)
            if strays and kind != "crash":
                problems.append(f"{case}: left {sorted(strays)}")
    assert problems == [], "\n".join(problems[:20])


def _lost_or_corrupt(before: dict, expected: dict, world: World) -> list[str]:
    """Entries neither as before nor as after a fault-free run; committed entries the
    operation does not touch, gone; images a client would find broken."""
    now = world.state()
    why = [
        f"{key} = {value!r}: neither before nor after"
        for key, value in now.items()
        if before.get(key, object()) != value and expected.get(key, object()) != value
    ]
    why += [
        f"{key}: committed, untouched by the operation, lost"
        for key, value in before.items()
        if expected.get(key) == value and now.get(key) != value
    ]
    return why + world.broken_images()


def test_manifest_bodies_in_s3_are_read_back_whole():
    """The S3 body path the "push, manifest body in S3" operation relies on."""
    world = World(FaultPlan(), inline_limit=64)
    world.push_image(IMAGE_A, "v1")
    record, body = world.manifests.fetch(REPO, "v1")
    assert record.body is None and record.body_key and body == IMAGE_A.manifest
    assert json.loads(body)["layers"][1]["size"] == PART + 5000
