"""The immutability parts of the ManifestIndex port, on the in-memory fake and on the
DynamoDB adapter (moto): the fake cannot drift from TAG_NEW_OR_SAME_DIGEST and from the
refused delete; and the rule store's adapter round trip."""

from __future__ import annotations

import pytest
from fakes import MemoryStorage
from skyport.storage.dynamodb.immutability import DynamoImmutabilityStore
from skyport.storage.dynamodb.manifests import DynamoManifestIndex
from skyport.storage.ports import BlobRecord, ManifestRecord, MissingReferences, TagImmutable

REPO = "team/app"
BLOB = "sha256:" + "a" * 64


def record(n: int) -> ManifestRecord:
    return ManifestRecord(
        digest=f"sha256:{n:064x}", media_type="application/vnd.oci.image.manifest.v1+json", size=n
    )


@pytest.fixture(params=["memory", "moto"])
def index(request: pytest.FixtureRequest):
    if request.param == "memory":
        memory = MemoryStorage()
        memory.blobs.link(REPO, BlobRecord(BLOB, 5, "blobs/x"))
        return memory.manifests
    settings = request.getfixturevalue("settings")
    clients = request.getfixturevalue("aws_clients")
    from skyport.storage.dynamodb.blobs import DynamoBlobIndex

    DynamoBlobIndex(clients.dynamodb, settings.table).link(REPO, BlobRecord(BLOB, 5, "blobs/x"))
    return DynamoManifestIndex(clients.dynamodb, settings.table)


def test_an_immutable_tag_is_created_rewritten_with_its_digest_never_moved(index):
    first, second = record(1), record(2)
    index.put_manifest(REPO, first, "v1", {BLOB: 5}, [], None, immutable_tag=True)
    index.put_manifest(REPO, first, "v1", {BLOB: 5}, [], None, immutable_tag=True)
    with pytest.raises(TagImmutable) as refused:
        index.put_manifest(REPO, second, "v1", {BLOB: 5}, [], None, immutable_tag=True)
    assert refused.value.tag == "v1"
    assert refused.value.current in (first.digest, None)  # the adapter says it when DynamoDB does
    assert index.get_tag(REPO, "v1").digest == first.digest
    assert index.get_manifest(REPO, second.digest) is None  # nothing of the push was stored
    # Without the flag the tag moves, as ever.
    index.put_manifest(REPO, second, "v1", {BLOB: 5}, [], None)
    assert index.get_tag(REPO, "v1").digest == second.digest


def test_missing_references_are_still_reported_for_an_immutable_tag(index):
    with pytest.raises(MissingReferences):
        index.put_manifest(REPO, record(3), "v1", {"sha256:" + "b" * 64: 1}, [], None, immutable_tag=True)
    assert index.get_tag(REPO, "v1") is None


def test_delete_manifest_keeps_everything_when_a_tag_must_stay(index):
    image = record(4)
    index.put_manifest(REPO, image, "v1", {BLOB: 5}, [], None)
    index.put_manifest(REPO, image, "latest", {BLOB: 5}, [], None)
    with pytest.raises(TagImmutable) as refused:
        index.delete_manifest(REPO, image.digest, keep_tag=lambda tag: tag == "v1")
    assert refused.value.tag == "v1"
    assert index.get_manifest(REPO, image.digest) is not None
    assert index.get_tag(REPO, "v1") is not None and index.get_tag(REPO, "latest") is not None
    assert index.delete_manifest(REPO, image.digest, keep_tag=lambda tag: False) is not None
    assert index.get_tag(REPO, "v1") is None and index.get_tag(REPO, "latest") is None
    assert index.delete_manifest(REPO, image.digest, keep_tag=lambda tag: True) is None


def test_the_rule_store_round_trip(settings, aws_clients):
    store = DynamoImmutabilityStore(aws_clients.dynamodb, settings.table)
    assert store.list_rules() == []
    fields = {"id": "im-0123abcd", "repositories": "team/*", "exclude": ["latest", "dev-*"], "created_ms": 7}
    assert store.create_rule(fields) is True
    assert store.create_rule({**fields, "repositories": "other/*"}) is False  # an id is never reused
    assert store.list_rules() == [fields]
    assert store.delete_rule("im-0123abcd") is True
    assert store.delete_rule("im-0123abcd") is False
    assert store.list_rules() == []
