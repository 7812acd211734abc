"""Immutable tags over HTTP, through every ``client`` flavour: created once, pushed again
with the same digest, never moved, never deleted (by tag or with their manifest); the
refusal is DENIED with a detail naming the rule, and storage stays as it was."""

from __future__ import annotations

import pytest
from oci import assert_error, make_image, push_image
from skyport.storage import keys

from .conftest import push_blobs, put

REPO = "team/app"


def test_an_immutable_tag_is_created_and_pushed_again_with_the_same_digest(client, rules):
    rules.add("team/*")
    image = make_image()
    push_blobs(client, REPO, image)
    for _ in range(3):  # CI retries: the same push again is no move
        response = put(client, REPO, "v1", image)
        assert response.status_code == 201, response.text
        assert response.headers["Docker-Content-Digest"] == image.digest
    got = client.get(f"/v2/{REPO}/manifests/v1")
    assert got.status_code == 200 and got.content == image.manifest
    assert client.get(f"/v2/{REPO}/tags/list").json()["tags"] == ["v1"]


def test_moving_an_immutable_tag_is_denied_and_changes_nothing(client, rules, storage):
    rule = rules.add("team/*", ["latest"])
    first, second = make_image(), make_image()
    push_image(client, REPO, first, "v1")
    push_blobs(client, REPO, second)
    before = storage.snapshot()

    refused = put(client, REPO, "v1", second)

    error = assert_error(refused, 403, "DENIED")
    assert error["detail"] == {
        "reason": "tag is immutable",
        "repository": REPO,
        "tag": "v1",
        "action": "overwrite",
        "digest": second.digest,
        "rule": {"id": rule.id, "repositories": "team/*", "exclude": ["latest"]},
    }
    assert rule.id in error["message"] and "new tag" in error["message"]
    assert storage.snapshot() == before
    got = client.get(f"/v2/{REPO}/manifests/v1")
    assert got.status_code == 200 and got.content == first.manifest
    assert client.get(f"/v2/{REPO}/manifests/{second.digest}").status_code == 404


def test_excluded_tags_and_other_repositories_stay_mutable(client, rules):
    rules.add("team/*", ["latest", "dev-*"])
    first, second = make_image(), make_image()
    for repository in (REPO, "other/app"):
        push_image(client, repository, first, "latest")
        for tag in ("latest", "dev-1", "dev-", "v1"):
            assert put(client, repository, tag, first).status_code == 201
        push_blobs(client, repository, second)
    for tag in ("latest", "dev-1", "dev-"):
        assert put(client, REPO, tag, second).status_code == 201, tag
        assert client.get(f"/v2/{REPO}/manifests/{tag}").content == second.manifest
    assert_error(put(client, REPO, "v1", second), 403, "DENIED")
    assert put(client, "other/app", "v1", second).status_code == 201
    assert client.get("/v2/other/app/manifests/v1").content == second.manifest


@pytest.mark.parametrize("tag", ["Latest", "latest-1", "xlatest", "dev"])
def test_an_exclusion_matches_the_whole_tag(client, rules, tag):
    rules.add("team/*", ["latest", "dev-*"])
    first, second = make_image(), make_image()
    push_image(client, REPO, first, tag)
    push_blobs(client, REPO, second)
    assert_error(put(client, REPO, tag, second), 403, "DENIED")


def test_the_oldest_covering_rule_is_named_and_the_most_protective_wins(client, rules):
    everything = rules.add("*", ["latest"])
    team = rules.add("team/*")
    first, second = make_image(), make_image()
    push_image(client, REPO, first, "latest")
    push_image(client, REPO, first, "v1")
    push_blobs(client, REPO, second)
    # `latest` is excluded by one rule, not by the other: immutable.
    error = assert_error(put(client, REPO, "latest", second), 403, "DENIED")
    assert error["detail"]["rule"]["id"] == team.id
    error = assert_error(put(client, REPO, "v1", second), 403, "DENIED")
    assert error["detail"]["rule"]["id"] == everything.id


def test_pushes_by_digest_are_untouched(client, rules):
    rules.add("*")
    image = make_image()
    push_image(client, REPO, image)
    push_image(client, REPO, image)
    assert client.get(f"/v2/{REPO}/manifests/{image.digest}").content == image.manifest


def test_deleting_an_immutable_tag_is_denied(client, rules, storage):
    rule = rules.add("team/*", ["latest"])
    image = make_image()
    push_image(client, REPO, image, "v1")
    assert put(client, REPO, "latest", image).status_code == 201
    before = storage.snapshot()

    error = assert_error(client.delete(f"/v2/{REPO}/manifests/v1"), 403, "DENIED")
    assert error["detail"]["action"] == "delete" and error["detail"]["rule"]["id"] == rule.id
    assert storage.snapshot() == before
    # A tag that does not exist is unknown, immutable or not.
    assert_error(client.delete(f"/v2/{REPO}/manifests/v2"), 404, "MANIFEST_UNKNOWN")
    # An excluded tag is deleted as usual.
    assert client.delete(f"/v2/{REPO}/manifests/latest").status_code == 202
    assert client.get(f"/v2/{REPO}/tags/list").json()["tags"] == ["v1"]


def test_deleting_the_manifest_an_immutable_tag_names_is_denied(client, rules, storage):
    rule = rules.add("team/*", ["latest"])
    kept, mutable, untagged = make_image(), make_image(), make_image()
    push_image(client, REPO, kept, "v1")
    assert put(client, REPO, "latest", kept).status_code == 201
    push_image(client, REPO, mutable, "latest-build")
    push_image(client, REPO, untagged)
    push_image(client, REPO, mutable, "latest")  # latest moves: it is excluded
    before = storage.snapshot()

    error = assert_error(client.delete(f"/v2/{REPO}/manifests/{kept.digest}"), 403, "DENIED")
    assert error["detail"]["tag"] == "v1" and error["detail"]["action"] == "delete manifest"
    assert error["detail"]["rule"]["id"] == rule.id
    assert storage.snapshot() == before
    assert client.get(f"/v2/{REPO}/manifests/v1").content == kept.manifest

    # Named by an immutable tag (latest-build is not excluded: 'latest' matches whole tags).
    assert_error(client.delete(f"/v2/{REPO}/manifests/{mutable.digest}"), 403, "DENIED")
    # No tag at all: deleted as usual.
    assert client.delete(f"/v2/{REPO}/manifests/{untagged.digest}").status_code == 202
    assert_error(client.delete(f"/v2/{REPO}/manifests/{untagged.digest}"), 404, "MANIFEST_UNKNOWN")


def test_a_manifest_named_only_by_mutable_tags_is_deleted_with_them(client, rules):
    rules.add("team/*", ["latest", "dev-*"])
    image = make_image()
    push_image(client, REPO, image, "latest")
    assert put(client, REPO, "dev-7", image).status_code == 201
    assert client.delete(f"/v2/{REPO}/manifests/{image.digest}").status_code == 202
    for tag in ("latest", "dev-7"):
        assert_error(client.get(f"/v2/{REPO}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")


def test_a_big_manifest_is_refused_before_its_body_is_stored(client, rules, storage, registry):
    # Bodies past the inline limit go to S3 by digest: a refused move must not leave one.
    padding = {"annotations": {"padding": "x" * (registry.settings.inline_manifest_limit + 1000)}}
    rules.add("team/*")
    first, second = make_image(extra=padding), make_image(extra=padding)
    push_image(client, REPO, first, "v1")
    assert put(client, REPO, "v1", first).status_code == 201  # same digest, big body
    push_blobs(client, REPO, second)
    before = storage.snapshot()
    assert_error(put(client, REPO, "v1", second), 403, "DENIED")
    assert storage.snapshot() == before
    assert keys.manifest_object(second.digest) not in [key for key, _, _ in before["objects"]]
    assert client.get(f"/v2/{REPO}/manifests/v1").content == first.manifest


def test_a_removed_rule_frees_its_tags_and_a_new_one_applies_at_once_here(app_client, rules):
    # app_client serves the very Registry the rules are changed through (cache dropped).
    first, second = make_image(), make_image()
    push_image(app_client, REPO, first, "v1")
    push_blobs(app_client, REPO, second)
    rule = rules.add("team/app")
    assert_error(put(app_client, REPO, "v1", second), 403, "DENIED")
    rules.remove(rule.id)
    assert put(app_client, REPO, "v1", second).status_code == 201
    assert app_client.get(f"/v2/{REPO}/manifests/v1").content == second.manifest


@pytest.mark.parametrize("pattern", [None, "other/*", "team/*"])
def test_no_extra_dynamodb_read_per_push(client, rules, dynamodb_calls, pattern):
    """The rules are read once per process per cache period: none, others', or covering."""
    if pattern:
        rules.add(pattern)
    image = make_image()
    push_blobs(client, REPO, image)
    dynamodb_calls.operations.clear()
    dynamodb_calls.partitions.clear()
    for tag in [f"t{i}" for i in range(5)]:
        assert put(client, REPO, tag, image).status_code == 201
    operations = list(dynamodb_calls.operations)
    assert dynamodb_calls.partitions.count(keys.IMMUTABILITY) <= 1
    # Each push is one transaction; the one rule read (if any) is the only other call.
    assert operations.count("TransactWriteItems") == 5
    assert len(operations) <= 5 + 1, operations
