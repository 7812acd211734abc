"""What an immutable tag's image is made of is protected with it: a child manifest of the
index it names, or a config or layer of its images, cannot be deleted by digest (DENIED,
action "delete referenced"); storage stays as it was. Content no immutable tag uses, and
content of excluded tags, still goes."""

from __future__ import annotations

from oci import assert_error, make_image, make_index, push_image, put_manifest, sha256

REPO = "team/app"


def _push_index(client, tag: str):
    children = [make_image(), make_image()]
    for child in children:
        push_image(client, REPO, child)
    body, media_type = make_index(children)
    response = put_manifest(client, REPO, tag, body, media_type)
    assert response.status_code == 201, response.text
    return children, response.headers["Docker-Content-Digest"]


def test_a_child_manifest_of_an_immutable_index_is_not_deleted(client, rules, storage):
    rule = rules.add("team/*", ["latest"])
    children, index_digest = _push_index(client, "v1")
    before = storage.snapshot()

    refused = client.delete(f"/v2/{REPO}/manifests/{children[1].digest}")

    error = assert_error(refused, 403, "DENIED")
    assert error["detail"] == {
        "reason": "tag is immutable",
        "repository": REPO,
        "tag": "v1",
        "action": "delete referenced",
        "digest": children[1].digest,
        "rule": {"id": rule.id, "repositories": "team/*", "exclude": ["latest"]},
    }
    assert children[1].digest in error["message"] and rule.id in error["message"]
    assert storage.snapshot() == before
    assert client.get(f"/v2/{REPO}/manifests/{children[1].digest}").status_code == 200


def test_a_layer_of_an_immutable_image_is_not_unlinked(client, rules, storage):
    rules.add("team/*")
    image = make_image()
    push_image(client, REPO, image, "v1")
    before = storage.snapshot()
    for blob in (image.config, image.layers[0]):
        refused = client.delete(f"/v2/{REPO}/blobs/{sha256(blob)}")
        assert assert_error(refused, 403, "DENIED")["detail"]["action"] == "delete referenced"
    assert storage.snapshot() == before
    assert client.head(f"/v2/{REPO}/blobs/{sha256(image.layers[0])}").status_code == 200


def test_a_layer_of_a_child_of_an_immutable_index_is_not_unlinked(client, rules, storage):
    rules.add("team/*")
    children, _ = _push_index(client, "v1")
    before = storage.snapshot()
    refused = client.delete(f"/v2/{REPO}/blobs/{sha256(children[0].layers[1])}")
    assert assert_error(refused, 403, "DENIED")["detail"]["tag"] == "v1"
    assert storage.snapshot() == before


def test_content_of_mutable_tags_and_of_nothing_tagged_still_goes(client, rules):
    rules.add("team/*", ["latest"])
    mutable = make_image()
    push_image(client, REPO, mutable, "latest")  # excluded: mutable
    loose = make_image()
    push_image(client, REPO, loose)  # by digest only: no tag
    shared_layer_image = make_image()
    push_image(client, REPO, shared_layer_image, "v1")

    assert client.delete(f"/v2/{REPO}/blobs/{sha256(mutable.layers[0])}").status_code == 202
    assert client.delete(f"/v2/{REPO}/manifests/{loose.digest}").status_code == 202
    assert client.delete(f"/v2/{REPO}/blobs/{sha256(loose.layers[1])}").status_code == 202
    # Other repositories are not covered by this rule.
    push_image(client, "other/app", shared_layer_image, "v1")
    assert client.delete(f"/v2/other/app/blobs/{sha256(shared_layer_image.layers[0])}").status_code == 202


def test_without_a_rule_covering_the_repository_no_tag_is_read(client, rules, dynamodb_calls, app_client):
    rules.add("elsewhere/*")
    image = make_image()
    push_image(app_client, REPO, image, "v1")
    dynamodb_calls.partitions.clear()
    assert app_client.delete(f"/v2/{REPO}/blobs/{sha256(image.layers[0])}").status_code == 202
    assert f"REPO#{REPO}" not in dynamodb_calls.partitions  # no Query of the tags


def test_removing_the_rule_frees_the_content(app_client, rules):
    rule = rules.add("team/*")
    children = [make_image(), make_image()]
    for child in children:
        push_image(app_client, REPO, child)
    body, media_type = make_index(children)
    assert put_manifest(app_client, REPO, "v1", body, media_type).status_code == 201
    assert app_client.delete(f"/v2/{REPO}/manifests/{children[0].digest}").status_code == 403
    rules.remove(rule.id)
    assert app_client.delete(f"/v2/{REPO}/manifests/{children[0].digest}").status_code == 202
