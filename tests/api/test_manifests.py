"""Manifests (distribution-spec "Pulling manifests", "Pushing Manifests", "Deleting Manifests"):
OCI image manifest and index, Docker schema 2 manifest and manifest list, OCI 1.1 artifacts."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    MiB,
    assert_error,
    descriptor,
    make_artifact,
    make_image,
    make_index,
    push_blob,
    push_image,
    put_manifest,
    sha256,
    sha512,
)

ALL_MANIFEST_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]


def assert_manifest(client, repo, reference, body, media_type):
    """GET and HEAD by ``reference`` answer the exact bytes, type, size and digest."""
    digest = sha256(body)
    response = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
    assert response.status_code == 200, response.text
    assert response.content == body
    assert response.headers["Content-Type"] == media_type
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == str(len(body))
    head = client.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Type"] == media_type
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Length"] == str(len(body))


def assert_pushed(response, repo, body):
    assert response.status_code == 201, response.text
    digest = sha256(body)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Location"] == f"/v2/{repo}/manifests/{digest}"


def push_blobs(client, repo, image):
    for blob in (image.config, *image.layers):
        push_blob(client, repo, blob, mode="post")


# --- pull and push, every manifest type ----------------------------------------------------


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
@pytest.mark.parametrize("by", ["tag", "digest"])
def test_image_manifest_round_trip(client, docker, by):
    image = make_image(docker=docker)
    push_blobs(client, "team/app", image)
    reference = "v1.0" if by == "tag" else image.digest
    assert_pushed(
        put_manifest(client, "team/app", reference, image.manifest, image.media_type),
        "team/app",
        image.manifest,
    )
    assert_manifest(client, "team/app", reference, image.manifest, image.media_type)
    assert_manifest(client, "team/app", image.digest, image.manifest, image.media_type)
    expected_tags = ["v1.0"] if by == "tag" else []
    assert client.get("/v2/team/app/tags/list").json()["tags"] == expected_tags


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_round_trip(client, docker):
    children = [make_image(docker=docker), make_image(layer_sizes=(10,), docker=docker)]
    for child in children:
        push_image(client, "team/app", child)
    body, media_type = make_index(children, docker=docker)
    assert_pushed(put_manifest(client, "team/app", "multi", body, media_type), "team/app", body)
    assert_manifest(client, "team/app", "multi", body, media_type)
    assert_manifest(client, "team/app", sha256(body), body, media_type)
    for child in children:
        assert_manifest(client, "team/app", child.digest, child.manifest, child.media_type)


def test_nested_index(client):
    child = make_image()
    push_image(client, "team/app", child)
    inner, _ = make_index([child])
    assert put_manifest(client, "team/app", sha256(inner), inner, OCI_INDEX).status_code == 201
    outer = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_INDEX, inner)]}
    ).encode()
    assert_pushed(put_manifest(client, "team/app", "nested", outer, OCI_INDEX), "team/app", outer)
    assert_manifest(client, "team/app", "nested", outer, OCI_INDEX)


def test_artifact_with_empty_config(client):
    assert sha256(EMPTY_JSON) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    artifact = make_artifact(blobs=(b"sbom contents",), artifact_type="application/spdx+json")
    push_blob(client, "team/app", EMPTY_JSON, mode="post")
    push_blob(client, "team/app", b"sbom contents", mode="post")
    response = put_manifest(client, "team/app", "sbom", artifact.manifest, OCI_MANIFEST)
    assert_pushed(response, "team/app", artifact.manifest)
    assert "OCI-Subject" not in response.headers
    assert_manifest(client, "team/app", "sbom", artifact.manifest, OCI_MANIFEST)
    config = client.get(f"/v2/team/app/blobs/{sha256(EMPTY_JSON)}")
    assert config.status_code == 307


def test_artifact_needs_its_empty_config_blob(client):
    artifact = make_artifact()
    error = assert_error(
        put_manifest(client, "team/app", "a", artifact.manifest, OCI_MANIFEST),
        404,
        "MANIFEST_BLOB_UNKNOWN",
    )
    assert sha256(EMPTY_JSON) in json.dumps(error.get("detail"))


def test_manifest_without_layers(client):
    config = b'{"architecture":"amd64","os":"linux"}'
    push_blob(client, "team/app", config, mode="post")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [],
        }
    ).encode()
    assert_pushed(put_manifest(client, "team/app", "empty", body, OCI_MANIFEST), "team/app", body)


def test_non_distributable_layers_need_no_blob(client):
    config = b'{"os":"windows"}'
    push_blob(client, "team/app", config, mode="post")
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"windows base layer"),
        "size": 18,
        "urls": ["https://example.com/layer"],
    }
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", config),
            "layers": [foreign],
        }
    ).encode()
    assert_pushed(put_manifest(client, "team/app", "win", body, DOCKER_MANIFEST), "team/app", body)


def test_bytes_are_stored_exactly(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    document = json.loads(image.manifest)
    # Odd but valid JSON: indentation, key order, unicode escapes, trailing newline.
    body = (
        '{\n  "layers": '
        + json.dumps(document["layers"], indent=3)
        + ',\n\t"config":'
        + json.dumps(document["config"])
        + ', "schemaVersion" : 2, "mediaType": "'
        + OCI_MANIFEST
        + '", "annotations": {"k": "caf\\u00e9 ☕"}}\n'
    ).encode()
    assert_pushed(put_manifest(client, "team/app", "odd", body, OCI_MANIFEST), "team/app", body)
    assert_manifest(client, "team/app", "odd", body, OCI_MANIFEST)


def test_media_type_from_content_type_when_the_body_has_none(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    document = json.loads(image.manifest)
    del document["mediaType"]
    body = json.dumps(document).encode()
    assert_pushed(put_manifest(client, "team/app", "t", body, OCI_MANIFEST), "team/app", body)
    assert_manifest(client, "team/app", "t", body, OCI_MANIFEST)


def test_content_type_parameters_are_ignored(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    response = put_manifest(client, "team/app", "t", image.manifest, f"{OCI_MANIFEST}; charset=utf-8")
    assert_pushed(response, "team/app", image.manifest)
    assert_manifest(client, "team/app", "t", image.manifest, OCI_MANIFEST)


def test_sha512_reference(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    digest = sha512(image.manifest)
    response = put_manifest(client, "team/app", digest, image.manifest, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    got = client.get(f"/v2/team/app/manifests/{digest}")
    assert got.status_code == 200 and got.content == image.manifest
    assert got.headers["Docker-Content-Digest"] == digest


def test_repush_is_idempotent(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    for reference in ("a", "a", image.digest, "b"):
        assert_pushed(
            put_manifest(client, "team/app", reference, image.manifest, OCI_MANIFEST),
            "team/app",
            image.manifest,
        )
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["a", "b"]


def test_unknown_manifest(client):
    push_image(client, "team/app", make_image(), "exists")
    for reference in ("latest", sha256(b"nothing")):
        assert_error(client.get(f"/v2/team/app/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        assert client.head(f"/v2/team/app/manifests/{reference}").status_code == 404
        assert_error(client.delete(f"/v2/team/app/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get("/v2/other/manifests/exists"), 404, "MANIFEST_UNKNOWN")


def test_a_reference_neither_tag_nor_digest_names_no_manifest(client):
    """distribution-spec "Pulling manifests": GET and HEAD of a manifest that cannot exist
    answer 404 MANIFEST_UNKNOWN (the conformance suite's `.INVALID_MANIFEST_NAME`); a PUT
    under such a tag is refused with TAG_INVALID and stores nothing."""
    image = make_image()
    push_image(client, "team/app", image, "v1")
    for reference in (".INVALID_MANIFEST_NAME", "-v1", "a+b", "t" * 129):
        assert_error(client.get(f"/v2/team/app/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        assert client.head(f"/v2/team/app/manifests/{reference}").status_code == 404
        response = put_manifest(client, "team/app", reference, image.manifest, OCI_MANIFEST)
        assert_error(response, 400, "TAG_INVALID")
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["v1"]


def test_manifest_is_only_visible_in_its_repository(client):
    image = make_image()
    push_image(client, "team/app", image, "v1")
    assert client.get(f"/v2/team/app/manifests/{image.digest}").status_code == 200
    assert_error(client.get(f"/v2/team/other/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get("/v2/team/other/manifests/v1"), 404, "MANIFEST_UNKNOWN")


# --- Accept negotiation --------------------------------------------------------------------


@pytest.fixture
def index_and_image(client):
    image = make_image(layer_sizes=())
    push_image(client, "team/app", image, "single")
    body, _ = make_index([image])
    assert put_manifest(client, "team/app", "multi", body, OCI_INDEX).status_code == 201
    return body, image


@pytest.mark.parametrize(
    ("accept", "multi_ok", "single_ok"),
    [
        ([], True, True),
        (["*/*"], True, True),
        ([OCI_MANIFEST, DOCKER_MANIFEST], False, True),  # two Accept lines, image types only
        ([f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"], False, True),  # one comma-separated line
        ([DOCKER_MANIFEST, f"{DOCKER_LIST};q=0.9"], False, False),
        (
            [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX],
            True,
            True,
        ),  # skopeo, podman: lines
        (
            [f"{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_INDEX};q=0.5, {OCI_MANIFEST}"],
            True,
            True,
        ),  # docker
        ([OCI_INDEX.upper()], True, False),
    ],
)
def test_accept_negotiation(client, index_and_image, accept, multi_ok, single_ok):
    headers = [("Accept", value) for value in accept]
    body, image = index_and_image
    for reference, ok, expected, media_type in (
        ("multi", multi_ok, body, OCI_INDEX),
        ("single", single_ok, image.manifest, OCI_MANIFEST),
    ):
        for method in ("GET", "HEAD"):
            response = client.request(method, f"/v2/team/app/manifests/{reference}", headers=headers)
            if ok:
                assert response.status_code == 200
                assert response.headers["Content-Type"] == media_type
                assert response.headers["Docker-Content-Digest"] == sha256(expected)
                if method == "GET":
                    assert response.content == expected
            else:
                assert_error(response, 404, "MANIFEST_UNKNOWN")


# --- subject -------------------------------------------------------------------------------


def test_subject_is_acknowledged_even_when_missing(client):
    push_blob(client, "team/app", EMPTY_JSON, mode="post")
    absent = make_image()  # never pushed
    artifact = make_artifact(absent.manifest)
    response = put_manifest(client, "team/app", artifact.digest, artifact.manifest, OCI_MANIFEST)
    assert_pushed(response, "team/app", artifact.manifest)
    assert response.headers["OCI-Subject"] == absent.digest


def test_index_with_subject(client):
    image = make_image()
    push_image(client, "team/app", image, "v1")
    body, _ = make_index(
        [image],
        extra={
            "subject": descriptor(OCI_MANIFEST, image.manifest),
            "artifactType": "application/vnd.example.index",
        },
    )
    response = put_manifest(client, "team/app", sha256(body), body, OCI_INDEX)
    assert_pushed(response, "team/app", body)
    assert response.headers["OCI-Subject"] == image.digest


# --- references ----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_missing_blob(client, storage, missing):
    image = make_image()
    push_blob(client, "team/app", image.layers[1], mode="post")
    if missing == "layer":
        push_blob(client, "team/app", image.config, mode="post")
        absent = sha256(image.layers[0])
    else:
        push_blob(client, "team/app", image.layers[0], mode="post")
        absent = sha256(image.config)
    before = storage.snapshot()
    error = assert_error(
        put_manifest(client, "team/app", "v1", image.manifest, OCI_MANIFEST),
        404,
        "MANIFEST_BLOB_UNKNOWN",
    )
    assert absent in json.dumps(error.get("detail"))
    assert storage.snapshot() == before
    assert_error(client.get("/v2/team/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_blob_in_another_repository_only(client):
    image = make_image()
    push_blobs(client, "team/other", image)
    assert_error(
        put_manifest(client, "team/app", "v1", image.manifest, OCI_MANIFEST),
        404,
        "MANIFEST_BLOB_UNKNOWN",
    )
    # Mounting makes them visible, and then the push works.
    for blob in (image.config, *image.layers):
        mounted = client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(blob)}&from=team/other")
        assert mounted.status_code == 201
    assert put_manifest(client, "team/app", "v1", image.manifest, OCI_MANIFEST).status_code == 201


def test_deleted_blob_cannot_be_referenced(client):
    image = make_image()
    push_blobs(client, "team/app", image)
    assert client.delete(f"/v2/team/app/blobs/{sha256(image.layers[0])}").status_code == 202
    assert_error(
        put_manifest(client, "team/app", "v1", image.manifest, OCI_MANIFEST),
        404,
        "MANIFEST_BLOB_UNKNOWN",
    )


def test_descriptor_size_mismatch(client, storage):
    image = make_image()
    push_blobs(client, "team/app", image)
    document = json.loads(image.manifest)
    document["layers"][0]["size"] += 1
    body = json.dumps(document).encode()
    before = storage.snapshot()
    response = put_manifest(client, "team/app", "v1", body, OCI_MANIFEST)
    assert_error(response, 404, "MANIFEST_BLOB_UNKNOWN")
    assert storage.snapshot() == before


def test_index_with_missing_child(client, storage):
    present, absent = make_image(), make_image()
    push_image(client, "team/app", present)
    push_blobs(client, "team/app", absent)  # its blobs, not its manifest
    body, _ = make_index([present, absent])
    before = storage.snapshot()
    error = assert_error(
        put_manifest(client, "team/app", "multi", body, OCI_INDEX), 404, "MANIFEST_BLOB_UNKNOWN"
    )
    assert absent.digest in json.dumps(error.get("detail"))
    assert present.digest not in json.dumps(error.get("detail"))
    assert storage.snapshot() == before


def test_index_with_child_in_another_repository_only(client):
    child = make_image()
    push_image(client, "team/other", child)
    body, _ = make_index([child])
    assert_error(put_manifest(client, "team/app", "multi", body, OCI_INDEX), 404, "MANIFEST_BLOB_UNKNOWN")


def test_many_references(asgi_client):
    """More references than one DynamoDB transaction holds (100 actions). Storage logic,
    not transport: it runs once, straight on the ASGI app."""
    client = asgi_client
    config = b'{"many":true}'
    layers = [os.urandom(16) for _ in range(100)]
    with ThreadPoolExecutor(8) as pool:  # setup only: 101 small pushes
        list(pool.map(lambda blob: push_blob(client, "team/app", blob, mode="post"), (config, *layers)))
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    body = json.dumps(document).encode()
    assert_pushed(put_manifest(client, "team/app", "many", body, OCI_MANIFEST), "team/app", body)
    document["layers"].append(descriptor(OCI_LAYER, b"never pushed"))
    body = json.dumps(document).encode()
    assert_error(put_manifest(client, "team/app", "many", body, OCI_MANIFEST), 404, "MANIFEST_BLOB_UNKNOWN")
    document["layers"].insert(0, document["layers"].pop())
    body = json.dumps(document).encode()
    assert_error(put_manifest(client, "team/app", "many", body, OCI_MANIFEST), 404, "MANIFEST_BLOB_UNKNOWN")


def unknown_layers(count: int) -> list[dict]:
    return [descriptor(OCI_LAYER, b"unknown %d" % i) for i in range(count)]


def test_unknown_references_cost_one_read(client, registry, storage, dynamodb_calls):
    """A manifest at the reference cap whose references are all unknown: refused after
    one BatchGetItem, not one GetItem per reference past the first transaction."""
    limit = registry.settings.max_manifest_references
    config = b'{"at the cap":true}'
    push_blob(client, "team/app", config, mode="post")
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": unknown_layers(limit - 1),
    }
    body = json.dumps(document).encode()
    before = storage.snapshot()
    dynamodb_calls.clear()
    response = put_manifest(client, "team/app", "v1", body, OCI_MANIFEST)
    assert_error(response, 404, "MANIFEST_BLOB_UNKNOWN")
    assert dynamodb_calls.operations == ["BatchGetItem"]
    assert storage.snapshot() == before


@pytest.mark.parametrize("kind", ["image", "index"])
def test_reference_cap(client, registry, storage, dynamodb_calls, kind):
    limit = registry.settings.max_manifest_references
    config = b'{"over the cap":true}'
    if kind == "image":
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": unknown_layers(limit),
        }
    else:
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, b"child %d" % i) for i in range(limit + 1)],
        }
    body = json.dumps(document).encode()
    before = storage.snapshot()
    dynamodb_calls.clear()
    response = put_manifest(client, "team/app", "v1", body, document["mediaType"])
    error = assert_error(response, 400, "MANIFEST_INVALID")
    assert error["detail"] == {"reason": "too many references", "references": limit + 1, "limit": limit}
    assert str(limit) in error["message"]
    assert dynamodb_calls.operations == []  # refused before anything is read
    assert storage.snapshot() == before


# --- size limits ---------------------------------------------------------------------------


def padded_manifest(client, size: int, where: str) -> bytes:
    """A valid image manifest of exactly ``size`` bytes, padded in ``where``."""
    image = make_image(layer_sizes=(100,))
    push_blobs(client, "team/app", image)
    document = json.loads(image.manifest)
    document[where] = {"pad": ""} if where == "annotations" else ""
    base = len(json.dumps(document).encode())
    if where == "annotations":
        document[where]["pad"] = "x" * (size - base)
    else:
        document[where] = "x" * (size - base)
    body = json.dumps(document).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("where", ["annotations", "x-padding"])
def test_four_mib_manifest_is_accepted(client, storage, registry, where):
    limit = registry.settings.max_manifest_size
    assert limit >= 4 * MiB
    body = padded_manifest(client, 4 * MiB, where)
    assert len(body) > registry.settings.inline_manifest_limit
    assert_pushed(put_manifest(client, "team/app", "big", body, OCI_MANIFEST), "team/app", body)
    assert_manifest(client, "team/app", "big", body, OCI_MANIFEST)
    assert_manifest(client, "team/app", sha256(body), body, OCI_MANIFEST)
    # Too big for a DynamoDB item: the body lives in S3, by digest.
    objects = [key for key, _, _ in storage.snapshot()["objects"] if key.startswith("manifests/")]
    assert objects == ["manifests/sha256/" + sha256(body).split(":", 1)[1]]


def test_manifest_over_the_limit(client, storage, registry):
    body = padded_manifest(client, registry.settings.max_manifest_size + 1, "x-padding")
    before = storage.snapshot()
    assert_error(put_manifest(client, "team/app", "big", body, OCI_MANIFEST), 413, "PAYLOAD_TOO_LARGE")

    def streamed():  # no Content-Length: the limit holds while reading
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    response = client.put(
        "/v2/team/app/manifests/big", content=streamed(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert storage.snapshot() == before


# --- invalid manifests ---------------------------------------------------------------------


def test_content_type_must_match_media_type(client, storage):
    image = make_image()
    push_blobs(client, "team/app", image)
    before = storage.snapshot()
    for content_type in (DOCKER_MANIFEST, OCI_INDEX):
        response = put_manifest(client, "team/app", "v1", image.manifest, content_type)
        assert_error(response, 400, "MANIFEST_INVALID")
    assert storage.snapshot() == before


def test_push_by_wrong_digest(client, storage):
    image = make_image()
    push_blobs(client, "team/app", image)
    before = storage.snapshot()
    wrong = sha256(image.manifest + b" ")
    assert_error(put_manifest(client, "team/app", wrong, image.manifest, OCI_MANIFEST), 400, "DIGEST_INVALID")
    assert_error(
        put_manifest(client, "team/app", sha512(b"x"), image.manifest, OCI_MANIFEST),
        400,
        "DIGEST_INVALID",
    )
    assert storage.snapshot() == before


# --- DELETE --------------------------------------------------------------------------------


def test_delete_by_tag_removes_only_the_tag(client):
    image = make_image()
    push_image(client, "team/app", image, "a")
    assert put_manifest(client, "team/app", "b", image.manifest, OCI_MANIFEST).status_code == 201
    assert client.delete("/v2/team/app/manifests/a").status_code == 202
    assert_error(client.get("/v2/team/app/manifests/a"), 404, "MANIFEST_UNKNOWN")
    assert_manifest(client, "team/app", "b", image.manifest, OCI_MANIFEST)
    assert_manifest(client, "team/app", image.digest, image.manifest, OCI_MANIFEST)
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["b"]
    assert_error(client.delete("/v2/team/app/manifests/a"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_its_tags(client):
    image, other = make_image(), make_image()
    push_image(client, "team/app", image, "a")
    push_image(client, "team/app", other, "other")
    for tag in ("b", "c"):
        assert put_manifest(client, "team/app", tag, image.manifest, OCI_MANIFEST).status_code == 201
    assert client.delete(f"/v2/team/app/manifests/{image.digest}").status_code == 202
    for reference in ("a", "b", "c", image.digest):
        assert_error(client.get(f"/v2/team/app/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
    assert client.get("/v2/team/app/tags/list").json()["tags"] == ["other"]
    assert_manifest(client, "team/app", "other", other.manifest, OCI_MANIFEST)
    assert_error(client.delete(f"/v2/team/app/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    # The blobs stay: deleting a manifest is not deleting its layers.
    assert client.head(f"/v2/team/app/blobs/{sha256(image.layers[0])}").status_code == 200


def test_moved_tag_survives_deleting_its_old_manifest(client):
    first, second = make_image(), make_image()
    push_image(client, "team/app", first, "latest")
    push_image(client, "team/app", second, "latest")
    assert_manifest(client, "team/app", "latest", second.manifest, OCI_MANIFEST)
    assert_manifest(client, "team/app", first.digest, first.manifest, OCI_MANIFEST)
    assert client.delete(f"/v2/team/app/manifests/{first.digest}").status_code == 202
    assert_manifest(client, "team/app", "latest", second.manifest, OCI_MANIFEST)


def test_delete_in_one_repository_leaves_the_other(client):
    image = make_image()
    push_image(client, "one", image, "v1")
    push_image(client, "two", image, "v1")
    assert client.delete(f"/v2/one/manifests/{image.digest}").status_code == 202
    assert_manifest(client, "two", "v1", image.manifest, OCI_MANIFEST)
