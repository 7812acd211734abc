"""One behaviour suite for the storage ports, run against the in-memory fakes
(tests/fakes.py) and the S3 and DynamoDB adapters on moto: the fakes cannot drift
from what the adapters do."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, replace
from typing import Any

import pytest
from fakes import MemoryStorage
from skyport.storage.dynamodb.blobs import DynamoBlobIndex
from skyport.storage.dynamodb.identities import DynamoAuthStore
from skyport.storage.dynamodb.manifests import DynamoManifestIndex
from skyport.storage.dynamodb.table import BATCH_GET_ATTEMPTS
from skyport.storage.dynamodb.uploads import DynamoUploadSessions
from skyport.storage.ports import (
    BlobRecord,
    IdentityRecord,
    Lockout,
    ManifestRecord,
    MissingReferences,
    ObjectMissing,
    StorageUnavailable,
    TooManyUploads,
    UploadConflict,
    UploadMissing,
    UploadSession,
)
from skyport.storage.s3 import S3ObjectStore

MiB = 1024 * 1024
NOW = 1_000_000


@dataclass
class Ports:
    objects: Any
    blobs: Any
    sessions: Any
    manifests: Any
    auth: Any


@pytest.fixture(params=["memory", "moto"])
def ports(request: pytest.FixtureRequest) -> Ports:
    if request.param == "memory":
        memory = MemoryStorage()
        return Ports(memory.objects, memory.blobs, memory.sessions, memory.manifests, memory.auth)
    settings = request.getfixturevalue("settings")
    clients = request.getfixturevalue("aws_clients")
    return Ports(
        S3ObjectStore(clients.s3, settings.bucket),
        DynamoBlobIndex(clients.dynamodb, settings.table),
        DynamoUploadSessions(clients.dynamodb, settings.table),
        DynamoManifestIndex(clients.dynamodb, settings.table),
        DynamoAuthStore(clients.dynamodb, settings.table),
    )


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- ObjectStore ------------------------------------------------------------------------


def test_objects_put_read_copy_delete(ports):
    objects = ports.objects
    objects.put("a", b"hello")
    assert objects.read("a") == b"hello"
    assert b"".join(objects.stream("a")) == b"hello"
    objects.copy("a", "b")
    assert objects.read("b") == b"hello"
    objects.delete("a")
    objects.delete("a")  # absent: not an error
    with pytest.raises(ObjectMissing):
        objects.read("a")
    with pytest.raises(ObjectMissing):
        objects.read("a", may_be_missing=True)
    with pytest.raises(ObjectMissing):
        objects.stream("a")  # when called: before a response streaming it has started
    with pytest.raises(ObjectMissing):
        objects.copy("a", "c")


def test_multipart_upload_with_a_short_last_part_and_copied_parts(ports):
    objects = ports.objects
    first, last = os.urandom(5 * MiB), os.urandom(100)
    upload = objects.start_multipart("blob")
    etags = [objects.upload_part("blob", upload, 1, first), objects.upload_part("blob", upload, 2, last)]
    objects.complete_multipart("blob", upload, etags)
    assert objects.read("blob") == first + last
    # Completed again while the object it made is still there: succeeds.
    objects.complete_multipart("blob", upload, etags)
    # Copied server-side into a new upload (a byte range), then a whole object as the last part.
    again = objects.start_multipart("blob")
    copied = [objects.copy_part("blob", again, 1, "blob", 0, 5 * MiB + 99)]
    objects.put("tail", b"xyz")
    copied.append(objects.copy_part("blob", again, 2, "tail"))
    objects.complete_multipart("blob", again, copied)
    assert objects.read("blob") == first + last + b"xyz"
    # Every part but the last must be at least 5 MiB.
    small = objects.start_multipart("small")
    etags = [objects.upload_part("small", small, 1, b"a"), objects.upload_part("small", small, 2, b"b")]
    with pytest.raises(Exception) as too_small:
        objects.complete_multipart("small", small, etags)
    assert "EntityTooSmall" in str(too_small.value)
    objects.abort_multipart("small", small)


def test_multipart_upload_gone(ports):
    objects = ports.objects
    upload = objects.start_multipart("blob")
    objects.upload_part("blob", upload, 1, b"x")
    objects.abort_multipart("blob", upload)
    objects.abort_multipart("blob", upload)  # idempotent
    # UploadPart and CompleteMultipartUpload on an aborted upload are NoSuchUpload on S3
    # (ObjectMissing, as the fake answers) but a 500 on moto: not compared here.
    live = objects.start_multipart("blob")
    with pytest.raises(ObjectMissing):
        objects.copy_part("blob", live, 1, "no-such-source")
    objects.abort_multipart("blob", live)


# --- BlobIndex --------------------------------------------------------------------------


def test_blob_index_first_writer_wins_and_links(ports):
    blobs = ports.blobs
    first = BlobRecord(digest(b"a"), 1, "blobs/one")
    assert blobs.get_blob(first.digest) is None
    assert blobs.add_blob(first) == first
    assert blobs.add_blob(replace(first, key="blobs/two")) == first
    assert blobs.get_link("r", first.digest) is None
    blobs.link("r", first)
    assert blobs.get_link("r", first.digest) == first
    assert blobs.unlink("r", first.digest) is True
    assert blobs.unlink("r", first.digest) is False
    assert blobs.get_link("r", first.digest) is None


# --- UploadSessions ---------------------------------------------------------------------


def session(upload_id: str = "u1", **changes: Any) -> UploadSession:
    return replace(
        UploadSession(
            upload_id=upload_id,
            repository="team/app",
            blob_key=f"blobs/{upload_id}",
            hash_state=b"state",
            expires_at=NOW + 3600,
        ),
        **changes,
    )


def test_sessions_lease(ports):
    sessions = ports.sessions
    sessions.create(session())
    assert sessions.get("u1") == session()
    claimed = sessions.claim("u1", "team/app", "t1", NOW, NOW + 60, expected_offset=0)
    assert claimed == session()
    # A second writer while the lease holds: busy.
    with pytest.raises(UploadConflict) as busy:
        sessions.claim("u1", "team/app", "t2", NOW + 1, NOW + 61, expected_offset=None)
    assert busy.value.busy is True and busy.value.current == session()
    # Past the lease time, another request takes it over; the first one's save fails.
    sessions.claim("u1", "team/app", "t2", NOW + 61, NOW + 121, expected_offset=None)
    with pytest.raises(UploadConflict):
        sessions.save(session(offset=5), "t1")
    # Saving drops the lease: the next claim needs no waiting.
    saved = session(
        offset=5,
        multipart_id="m",
        part_etags=['"00112233445566778899aabbccddeeff"'],
        tail_key="uploads/u1/tail-5",
        tail_size=5,
    )
    sessions.save(saved, "t2")
    assert sessions.get("u1") == saved
    assert sessions.claim("u1", "team/app", "t3", NOW + 62, NOW + 122, expected_offset=5) == saved
    sessions.release("u1", "t3")
    sessions.release("u1", "t3")  # released already: nothing happens
    sessions.claim("u1", "team/app", "t4", NOW + 63, NOW + 123, expected_offset=5)


def test_sessions_conditions(ports):
    sessions = ports.sessions
    sessions.create(session(offset=10, owner="alice"))
    with pytest.raises(UploadConflict) as wrong_offset:
        sessions.claim("u1", "team/app", "t", NOW, NOW + 60, expected_offset=3)
    assert wrong_offset.value.busy is False and wrong_offset.value.current.offset == 10
    for repository, now, owner in (
        ("team/other", NOW, None),
        ("team/app", NOW + 3600, None),
        ("team/app", NOW, "bob"),
    ):
        with pytest.raises(UploadMissing):
            sessions.claim("u1", repository, "t", now, now + 60, expected_offset=None, owner=owner)
    with pytest.raises(UploadMissing):
        sessions.claim("nope", "team/app", "t", NOW, NOW + 60, expected_offset=None)
    sessions.claim("u1", "team/app", "t", NOW, NOW + 60, expected_offset=10, owner="alice")
    with pytest.raises(UploadMissing):
        sessions.delete("u1", "team/app", token="other")
    with pytest.raises(UploadMissing):
        sessions.delete("u1", "team/other")
    with pytest.raises(UploadMissing):
        sessions.delete("u1", "team/app", owner="bob")
    assert sessions.delete("u1", "team/app", token="t", owner="alice").offset == 10
    assert sessions.get("u1") is None
    with pytest.raises(UploadMissing):
        sessions.delete("u1", "team/app")


def test_sessions_open_cap(ports):
    sessions = ports.sessions
    alice = [session(f"a{i}", quota="identity:alice") for i in range(3)]
    for one in alice:
        sessions.create(one, max_open=3, now=NOW)
    with pytest.raises(TooManyUploads) as full:
        sessions.create(session("a3", quota="identity:alice"), max_open=3, now=NOW)
    assert full.value.limit == 3
    assert sessions.get("a3") is None  # refused: nothing stored
    # Other quotas, and sessions counted in none, are not limited by alice's.
    sessions.create(session("b0", quota="identity:bob"), max_open=3, now=NOW)
    sessions.create(session("n0"), max_open=3, now=NOW)
    sessions.create(session("a4", quota="identity:alice"))  # no cap given: counted in none
    # A session saved under a lease keeps its quota; removing it (finished or
    # cancelled) frees its place, once.
    claimed = sessions.claim("a0", "team/app", "t", NOW, NOW + 60, expected_offset=0)
    assert claimed.quota == "identity:alice"
    sessions.save(replace(claimed, offset=3), "t")
    assert sessions.get("a0").quota == "identity:alice"
    sessions.delete("a0", "team/app")
    with pytest.raises(UploadMissing):
        sessions.delete("a0", "team/app")
    sessions.create(session("a5", quota="identity:alice", expires_at=NOW + 100), max_open=3, now=NOW)
    with pytest.raises(TooManyUploads):
        sessions.create(session("a6", quota="identity:alice"), max_open=3, now=NOW)
    # Sessions that expired (whether or not storage has removed them yet) do not count.
    later = NOW + 100
    sessions.create(session("a6", quota="identity:alice", expires_at=later + 5000), max_open=3, now=later)
    with pytest.raises(TooManyUploads):
        sessions.create(session("a7", quota="identity:alice", expires_at=later + 5000), max_open=3, now=later)
    for one in ("a1", "a2", "a4", "a6"):
        sessions.delete(one, "team/app")
    for i in range(4):
        fresh = session(f"c{i}", quota="identity:alice", expires_at=later + 5000)
        if i < 3:
            sessions.create(fresh, max_open=3, now=later)
        else:
            with pytest.raises(TooManyUploads):
                sessions.create(fresh, max_open=3, now=later)


# --- ManifestIndex ----------------------------------------------------------------------


def manifest(body: bytes, subject: str | None = None) -> ManifestRecord:
    return ManifestRecord(
        digest(body), "application/vnd.oci.image.manifest.v1+json", len(body), body=body, subject=subject
    )


def test_manifests_tags_referrers_catalog(ports):
    index, blobs = ports.manifests, ports.blobs
    layer = BlobRecord(digest(b"layer"), 5, "blobs/x")
    one = manifest(b"one")
    with pytest.raises(MissingReferences) as missing:
        index.put_manifest("team/app", one, "v1", {layer.digest: 5}, [digest(b"child")], None)
    assert missing.value.blobs == [layer.digest] and missing.value.manifests == [digest(b"child")]
    assert index.get_manifest("team/app", one.digest) is None
    assert not index.repository_exists("team/app")
    blobs.link("team/app", layer)
    with pytest.raises(MissingReferences):
        index.put_manifest("team/app", one, "v1", {layer.digest: 6}, [], None)  # wrong size
    index.put_manifest("team/app", one, "v1", {layer.digest: 5}, [], None)
    index.put_manifest("team/app", one, "latest", {}, [], None)
    signature = manifest(b"sig", subject=one.digest)
    index.put_manifest("team/app", signature, None, {}, [one.digest], one.digest)
    assert index.get_tag("team/app", "v1") == one
    assert index.get_manifest("team/app", signature.digest) == signature
    assert [r.digest for r in index.list_referrers("team/app", one.digest)] == [signature.digest]
    page = index.list_tags("team/app", 1, None)
    assert page.items == ["latest"] and page.has_more
    assert index.list_tags("team/app", 5, "latest").items == ["v1"]
    index.put_manifest("team/zzz", manifest(b"z"), None, {}, [], None)
    assert index.list_repositories(10, None).items == ["team/app", "team/zzz"]
    assert index.list_repositories(10, "team/app").items == ["team/zzz"]
    # Deleting a manifest takes its tags with it; its referrers' entry goes with the referrer.
    assert index.delete_tag("team/app", "latest") is True
    assert index.delete_tag("team/app", "latest") is False
    assert index.delete_manifest("team/app", one.digest) == one
    assert index.get_tag("team/app", "v1") is None
    assert index.delete_manifest("team/app", one.digest) is None
    assert index.forget_repository_if_empty("team/app") is False  # signature still there
    assert index.delete_manifest("team/app", signature.digest) == signature
    assert index.list_referrers("team/app", one.digest) == []
    # Empty now: it leaves the catalog, once; a repository never seen is not forgotten.
    assert index.forget_repository_if_empty("team/app") is True
    assert index.forget_repository_if_empty("team/app") is False
    assert index.forget_repository_if_empty("team/never") is False
    assert index.list_repositories(10, None).items == ["team/zzz"]


def test_a_delete_for_an_older_push_removes_nothing(ports):
    """Retention's delete (MANIFEST_UNCHANGED_SINCE): given a push time that is not the
    manifest's last (an evaluation older than a push), nothing is removed."""
    index = ports.manifests
    one = manifest(b"one")
    index.put_manifest("team/app", one, "v1", {}, [], None)
    assert index.delete_manifest("team/app", one.digest, pushed_ms=1) is None
    assert index.delete_manifest("team/app", one.digest, pushed_ms=0) is None  # it has a push time
    assert index.get_manifest("team/app", one.digest) == one
    assert index.get_tag("team/app", "v1") == one
    assert index.delete_manifest("team/app", one.digest) == one


def test_manifest_with_more_references_than_a_transaction_holds(ports):
    """Past the first transaction's room, references are read in batches: every one
    is checked, wherever the one missing (or at another size) stands."""
    index, blobs = ports.manifests, ports.blobs
    layers = [BlobRecord(digest(b"layer %d" % i), i, f"blobs/{i}") for i in range(350)]
    for layer in layers:
        blobs.link("team/app", layer)
    sizes = {layer.digest: layer.size for layer in layers}
    for position in (0, 120, 230, 349):
        absent = dict(sizes)
        del absent[layers[position].digest]
        absent[digest(b"absent")] = 1
        with pytest.raises(MissingReferences) as missing:
            index.put_manifest("team/app", manifest(b"m"), "v1", absent, [], None)
        assert missing.value.blobs == [digest(b"absent")]
        with pytest.raises(MissingReferences) as missing:
            index.check_references("team/app", manifest(b"m").digest, absent, [])
        assert missing.value.blobs == [digest(b"absent")]
        wrong = {**sizes, layers[position].digest: layers[position].size + 1}
        with pytest.raises(MissingReferences) as missing:
            index.put_manifest("team/app", manifest(b"m"), "v1", wrong, [], None)
        assert missing.value.blobs == [layers[position].digest]
    child = manifest(b"child")
    index.put_manifest("team/app", child, None, {}, [], None)
    with pytest.raises(MissingReferences) as missing:
        index.put_manifest("team/app", manifest(b"m"), "v1", sizes, [child.digest, digest(b"no")], None)
    assert missing.value.manifests == [digest(b"no")]
    assert index.get_tag("team/app", "v1") is None
    # A manifest may name itself among its children (it is never missing to itself).
    index.check_references("team/app", manifest(b"m").digest, sizes, [child.digest, manifest(b"m").digest])
    index.put_manifest("team/app", manifest(b"m"), "v1", sizes, [child.digest], None)
    assert index.get_tag("team/app", "v1") == manifest(b"m")


def test_batch_reads_ask_again_for_unprocessed_keys(settings, aws_clients):
    """BatchGetItem may leave keys unread (UnprocessedKeys): they are asked again, a
    bounded number of times. DynamoDB-only: moto's answers are made to hold keys back
    through botocore's after-call event (the SDK's own hook, nothing of ours replaced)."""
    dynamodb = aws_clients.dynamodb
    index = DynamoManifestIndex(dynamodb, settings.table)
    blobs = DynamoBlobIndex(dynamodb, settings.table)
    layers = [BlobRecord(digest(b"layer %d" % i), i, f"blobs/{i}") for i in range(200)]
    for layer in layers:
        blobs.link("team/app", layer)
    sizes = {layer.digest: layer.size for layer in layers}
    calls = []

    def hold_back(parsed, model, times: int, **_):
        calls.append(model.name)
        items = parsed.get("Responses", {}).get(settings.table, [])
        if len(calls) <= times and items:
            held, parsed["Responses"][settings.table] = items[::2], items[1::2]
            parsed["UnprocessedKeys"] = {
                settings.table: {
                    "Keys": [{"PK": item["PK"], "SK": item["SK"]} for item in held],
                    "ProjectionExpression": "PK, SK, size_bytes",
                }
            }

    events = dynamodb.meta.events
    for times, fails in ((2, False), (BATCH_GET_ATTEMPTS, True)):
        calls.clear()
        handler = functools.partial(hold_back, times=times)
        events.register("after-call.dynamodb.BatchGetItem", handler)
        try:
            if fails:
                with pytest.raises(StorageUnavailable):
                    index.check_references("team/app", digest(b"m"), sizes, [])
                assert len(calls) == BATCH_GET_ATTEMPTS
            else:
                index.check_references("team/app", digest(b"m"), sizes, [])
                assert len(calls) == 2 + 2  # two batches of 100, the first asked again twice
                with pytest.raises(MissingReferences) as missing:
                    index.check_references("team/app", digest(b"m"), {**sizes, digest(b"no"): 1}, [])
                assert missing.value.blobs == [digest(b"no")]
        finally:
            events.unregister("after-call.dynamodb.BatchGetItem", handler)


# --- AuthStore --------------------------------------------------------------------------


def test_identities_lockout_grants_keys_bootstrap(ports):
    auth = ports.auth
    alice = IdentityRecord("alice", "user", "hash-1", groups=("dev",), created_at=5)
    assert auth.create_identity(alice) is True
    assert auth.create_identity(replace(alice, password_hash="other")) is False
    assert auth.get_identity("alice") == alice
    assert auth.update_identity("alice", admin=True, groups=["ops"]) is True
    assert auth.get_identity("alice") == replace(alice, admin=True, groups=("ops",))
    lockout = {"threshold": 2, "max_lock_seconds": 60, "window": 50}
    for now in (100, 101, 102):
        auth.record_failed_login("alice", "10.0.0.1", now, **lockout)
    lock = auth.get_lockout("alice", "10.0.0.1")
    assert (lock.failures, lock.locked_until) == (3, 104)
    # Per source address; and a failure past the window starts the count again.
    assert auth.get_lockout("alice", "10.0.0.2") is None
    auth.record_failed_login("alice", "10.0.0.1", 151, **lockout)
    assert auth.get_lockout("alice", "10.0.0.1") == Lockout(1, 151, 0)
    auth.record_failed_login("nobody", "", 100, **lockout)
    assert auth.get_identity("nobody") is None
    # A new password: the generation moves on.
    assert auth.update_identity("alice", password_hash="hash-2") is True
    assert auth.get_identity("alice").generation == 2
    auth.record_failed_login("alice", "10.0.0.2", 200, **lockout)
    auth.clear_failed_logins("alice", "10.0.0.2")
    assert auth.get_lockout("alice", "10.0.0.2") is None
    assert auth.get_lockout("alice", "10.0.0.1") is not None
    auth.clear_failed_logins("alice")
    assert auth.get_lockout("alice", "10.0.0.1") is None
    assert auth.update_identity("bob", admin=True) is False
    auth.create_identity(IdentityRecord("robot+ci", "robot", "h"))
    assert [r.name for r in auth.list_identities()] == ["alice", "robot+ci"]
    assert auth.delete_identity("robot+ci") is True and auth.delete_identity("robot+ci") is False

    auth.put_grant("team/*", "alice", frozenset({"pull", "push"}))
    auth.put_grant("*", "*", frozenset({"pull"}))
    assert sorted(auth.list_grants()) == [
        ("*", "*", frozenset({"pull"})),
        ("team/*", "alice", frozenset({"pull", "push"})),
    ]
    assert auth.delete_grant("*", "*") is True and auth.delete_grant("*", "*") is False

    assert auth.get_signing_keys() is None
    assert auth.put_signing_keys(b"k1", None, replacing=b"other") is False
    assert auth.put_signing_keys(b"k1", None, replacing=None) is True
    assert auth.put_signing_keys(b"k2", b"k1", replacing=None) is False
    assert auth.put_signing_keys(b"k2", b"k1", replacing=b"k1") is True
    assert auth.get_signing_keys() == (b"k2", b"k1")

    admin = IdentityRecord("admin", "user", "h", admin=True)
    assert auth.bootstrap_admin(admin) is True
    assert auth.bootstrap_admin(replace(admin, name="admin2")) is False
    assert auth.get_identity("admin") == admin
