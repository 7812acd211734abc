"""Replication to a second Skyport, by both kinds of destination: over the distribution
API (the destination served by uvicorn on a real port) and by its storage
(skyport://BUCKET/TABLE: server-side S3 copy, the destination's core services).
Events come from the source's table stream after real pushes through the API."""

from __future__ import annotations

import asyncio

import pytest
from direct.running import serve
from harness import StorageView
from oci import OCI_INDEX, make_artifact, make_image, make_index, push_image, put_manifest, sha256
from skyport.errors import ManifestUnknown
from skyport.events import TAG_CREATED
from skyport.registry import Registry
from skyport.replication import Replicator

from .conftest import replicate_all, skyport_url

REPO = "team/app"


@pytest.fixture(params=["oci", "skyport"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def destination_url(kind: str, request: pytest.FixtureRequest, destination: Registry) -> str:
    if kind == "oci":
        served = request.getfixturevalue("served_destination")
        return served.url
    return skyport_url(destination)


def digest_at(registry: Registry, repository: str, reference: str) -> str | None:
    try:
        return registry.manifests.resolve(repository, reference).digest
    except ManifestUnknown:
        return None


def test_an_image_its_tag_and_untagged_referrer_arrive_with_the_same_digests(
    rules, replicator, feed, source_client, destination, destination_url, registry
):
    rule = rules.add("team/*", destination_url)
    image = make_image()
    push_image(source_client, REPO, image, "1.0")
    sbom = make_artifact(image.manifest)
    push_image(source_client, REPO, sbom)  # by digest, with a subject
    replicate_all(replicator, feed.new())

    assert digest_at(destination, REPO, "1.0") == image.digest
    assert digest_at(destination, REPO, sbom.digest) == sbom.digest
    record, body = destination.manifests.fetch(REPO, "1.0")
    assert body == image.manifest
    for blob in (image.config, *image.layers):
        assert destination.blobs.stat(REPO, sha256(blob)).size == len(blob)
    referrers = destination.referrers.list(REPO, image.digest, None).index["manifests"]
    assert [r["digest"] for r in referrers] == [sbom.digest]
    status = dict((r.id, s) for r, s in rules.list())[rule.id]
    assert status.last_success_at and not status.last_error and status.lag_seconds is not None


def test_a_multi_platform_index_arrives_children_first(
    rules, replicator, feed, source_client, destination, destination_url
):
    rules.add("team/app", destination_url)
    children = [make_image((512,)), make_image((700,)), make_image((900,))]
    for child in children:
        push_image(source_client, REPO, child)  # by digest, as clients push platforms
    index, media_type = make_index(children)
    assert put_manifest(source_client, REPO, "multi", index, media_type).status_code == 201
    # Only the tag's event: the index cannot be stored at the destination before its
    # children (the destination refuses it), so this passing shows the order.
    tag_events = [e for e in feed.new() if e.type == TAG_CREATED]
    replicate_all(replicator, tag_events)

    assert digest_at(destination, REPO, "multi") == sha256(index)
    assert destination.manifests.resolve(REPO, "multi").media_type == OCI_INDEX
    for child in children:
        assert digest_at(destination, REPO, child.digest) == child.digest


def test_a_moved_tag_moves_at_the_destination(
    rules, replicator, feed, source_client, destination, destination_url
):
    rules.add("team/*", destination_url, tags="v*")
    first, second = make_image(), make_image()
    push_image(source_client, REPO, first, "v1")
    push_image(source_client, REPO, first, "other")  # outside the tag pattern
    replicate_all(replicator, feed.new())
    assert digest_at(destination, REPO, "v1") == first.digest
    assert digest_at(destination, REPO, "other") is None

    push_image(source_client, REPO, second, "v1")
    replicate_all(replicator, feed.new())
    assert digest_at(destination, REPO, "v1") == second.digest


@pytest.mark.parametrize("deletes", [True, False])
def test_deletes_replicate_only_when_the_rule_says_so(
    deletes, rules, replicator, feed, source_client, destination, destination_url
):
    rules.add("team/*", destination_url, deletes=deletes)
    kept, dropped = make_image(), make_image()
    push_image(source_client, REPO, kept, "keep")
    push_image(source_client, REPO, kept, "gone-tag")
    push_image(source_client, REPO, dropped, "gone-manifest")
    replicate_all(replicator, feed.new())
    assert digest_at(destination, REPO, "gone-tag") == kept.digest

    assert source_client.delete(f"/v2/{REPO}/manifests/gone-tag").status_code == 202
    assert source_client.delete(f"/v2/{REPO}/manifests/{dropped.digest}").status_code == 202
    replicate_all(replicator, feed.new())

    assert digest_at(destination, REPO, "keep") == kept.digest
    if deletes:
        assert digest_at(destination, REPO, "gone-tag") is None
        assert digest_at(destination, REPO, dropped.digest) is None
        assert digest_at(destination, REPO, "gone-manifest") is None
    else:
        assert digest_at(destination, REPO, "gone-tag") == kept.digest
        assert digest_at(destination, REPO, dropped.digest) == dropped.digest


def test_a_late_older_event_is_ignored(rules, replicator, feed, source_client, destination, destination_url):
    rule = rules.add("team/*", destination_url, deletes=True)
    first, second = make_image(), make_image()
    push_image(source_client, REPO, first, "latest")
    created = [e for e in feed.new() if e.type == TAG_CREATED]
    push_image(source_client, REPO, second, "latest")
    moved = [e for e in feed.new() if e.tag == "latest"]
    assert [e.type for e in moved] == ["tag.moved"]
    assert int(moved[0].sequence_number) > int(created[0].sequence_number)

    replicate_all(replicator, moved)  # the newer event first
    assert digest_at(destination, REPO, "latest") == second.digest
    destination.manifests.delete(REPO, "latest")  # so that re-applying would show
    replicate_all(replicator, created)  # the older one, late: skipped by the guard
    assert digest_at(destination, REPO, "latest") is None
    applied = dict((r.id, s) for r, s in rules.list())[rule.id].applied
    assert applied == 1


def test_a_redelivered_event_changes_nothing_more(
    rules, replicator, feed, source_client, destination, destination_url, registry
):
    rules.add("*", destination_url)
    index_children = [make_image((300,)), make_image((400,))]
    for child in index_children:
        push_image(source_client, "a/b", child)
    index, media_type = make_index(index_children)
    assert put_manifest(source_client, "a/b", "1", index, media_type).status_code == 201
    events = feed.new()
    replicate_all(replicator, events)
    before = StorageView(destination).snapshot()
    replicate_all(replicator, events)  # SQS redelivers
    replicate_all(Replicator(registry), events)  # another process, the guard is in the table
    assert StorageView(destination).snapshot() == before


def test_rule_and_guard_items_are_no_registry_events(rules, replicator, feed, source_client, destination_url):
    feed.new()
    rule = rules.add("team/*", destination_url)
    push_image(source_client, REPO, make_image(), "x")
    events = feed.new()
    replicate_all(replicator, events)  # writes status and guard items to the source's table
    rules.remove(rule.id)
    assert [e.type for e in feed.new()] == []
    assert {e.type for e in events} == {"manifest.pushed", "repository.created", "tag.created"}


def test_a_rule_for_other_repositories_does_nothing(rules, replicator, feed, source_client, destination):
    rules.add("other/*", skyport_url(destination))
    push_image(source_client, REPO, make_image(), "x")
    before = StorageView(destination).snapshot()
    events = feed.new()
    assert all(replicator.rules_for(e) == [] for e in events)
    replicate_all(replicator, events)
    assert StorageView(destination).snapshot() == before


def test_blobs_the_destination_has_are_linked_not_copied(
    rules, replicator, feed, source_client, destination, registry
):
    image = make_image()
    rules.add("*", skyport_url(destination))
    push_image(source_client, "one", image, "1")
    push_image(source_client, "two", image, "1")
    replicate_all(replicator, feed.new())
    objects = destination.clients.s3.list_objects_v2(Bucket=destination.settings.bucket).get("Contents", [])
    # config and layers once each, though both repositories hold them
    assert len([o for o in objects if o["Key"].startswith("blobs/")]) == 1 + len(image.layers)
    assert digest_at(destination, "two", "1") == image.digest


def test_the_distribution_client_reads_what_was_replicated(
    rules, replicator, feed, source_client, served_destination
):
    """The client's read side (tags with Link pages, manifest GET) against the replica."""
    from skyport.distribution_client import RegistryClient
    from skyport.replication.destinations import ACCEPT

    rules.add("*", served_destination.url)
    image = make_image()
    for tag in ("a", "b", "c"):
        push_image(source_client, REPO, image, tag)
    replicate_all(replicator, feed.new())
    client = RegistryClient(served_destination.address, REPO)
    assert sorted(client.tags()) == ["a", "b", "c"]
    digest, media_type, body = client.manifest("b", ACCEPT)
    assert (digest, media_type, body) == (image.digest, image.media_type, image.manifest)
    assert client.manifest("missing", ACCEPT) is None
    assert RegistryClient(served_destination.address, "no/such").tags() == []


class BeforeFirstPut:
    """ASGI middleware of a destination (``wrap`` puts it in front of the app): the first
    PUT of ``path`` waits, off the server's event loop (which goes on serving), for
    ``meanwhile`` to run; then it is served."""

    def __init__(self, path: str, meanwhile) -> None:
        self._path, self._meanwhile = path, meanwhile
        self._app = None
        self.held = False

    def wrap(self, app):
        self._app = app
        return self

    async def __call__(self, scope, receive, send) -> None:
        if (
            not self.held
            and scope["type"] == "http"
            and scope["method"] == "PUT"
            and scope["path"] == self._path
        ):
            self.held = True
            await asyncio.to_thread(self._meanwhile)
        await self._app(scope, receive, send)


def test_a_guard_write_that_loses_to_a_newer_event_applies_the_current_state_again(
    rules, replicator, feed, source_client, destination, registry
):
    """The older event's tag PUT lands at the destination after the newer event has been
    applied and guarded (its state read before the tag moved): the older one's guard write
    then loses, and its second pass puts the tag's current manifest back, so the newest
    state wins whichever event finished last."""
    first, second = make_image(), make_image()
    push_image(source_client, REPO, first, "latest")
    (created,) = [e for e in feed.new() if e.type == TAG_CREATED]
    newer: list = []

    def the_tag_moves_and_the_newer_event_is_applied() -> None:
        push_image(source_client, REPO, second, "latest")
        newer.extend(e for e in feed.new() if e.tag == "latest")
        replicate_all(Replicator(registry), newer)  # another consumer, to the end

    # The older event's tag PUT waits while all that happens.
    gate = BeforeFirstPut(f"/v2/{REPO}/manifests/latest", the_tag_moves_and_the_newer_event_is_applied)
    with serve(destination, gate.wrap) as served:
        rules.add("team/*", served.url)
        replicator.replicate(created)

    assert gate.held
    assert [e.type for e in newer] == ["tag.moved"]
    assert int(newer[0].sequence_number) > int(created.sequence_number)
    assert digest_at(destination, REPO, "latest") == second.digest
