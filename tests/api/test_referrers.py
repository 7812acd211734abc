"""The referrers API (distribution-spec 1.1 "Listing Referrers")."""

import json

import pytest
from oci import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    descriptor,
    make_artifact,
    make_image,
    make_index,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)

SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"


@pytest.fixture
def subject(client):
    image = make_image()
    push_image(client, "team/app", image, "v1")
    push_blob(client, "team/app", EMPTY_JSON, mode="post")
    return image


def push_referrer(client, repo, artifact, reference=None):
    response = put_manifest(client, repo, reference or artifact.digest, artifact.manifest, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    return response


def referrers(client, digest, repo="team/app", **params):
    response = client.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    return response, index["manifests"]


def test_lists_manifests_whose_subject_is_the_digest(client, subject):
    sbom = make_artifact(subject.manifest, artifact_type=SBOM, annotations={"org.example.kind": "sbom"})
    signature = make_artifact(
        subject.manifest,
        artifact_type=SIGNATURE,
        annotations={"org.example.kind": "signature", "created": "now"},
    )
    unrelated = make_artifact(artifact_type=SBOM)
    for artifact in (sbom, signature, unrelated):
        response = push_referrer(client, "team/app", artifact)
    response, manifests = referrers(client, subject.digest)
    assert "OCI-Filters-Applied" not in response.headers
    assert sorted(manifests, key=lambda d: d["digest"]) == sorted(
        [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sbom.digest,
                "size": len(sbom.manifest),
                "artifactType": SBOM,
                "annotations": {"org.example.kind": "sbom"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": signature.digest,
                "size": len(signature.manifest),
                "artifactType": SIGNATURE,
                "annotations": {"org.example.kind": "signature", "created": "now"},
            },
        ],
        key=lambda d: d["digest"],
    )


def test_artifact_type_falls_back_to_the_config_media_type(client, subject):
    config = b'{"signed": true}'
    push_blob(client, "team/app", config, mode="post")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.example.config.v1+json", config),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, subject.manifest),
        }
    ).encode()
    assert put_manifest(client, "team/app", sha256(body), body, OCI_MANIFEST).status_code == 201
    _, manifests = referrers(client, subject.digest)
    assert manifests == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(body),
            "size": len(body),
            "artifactType": "application/vnd.example.config.v1+json",
        }
    ]


def test_index_as_referrer(client, subject):
    with_type, _ = make_index(
        [subject],
        extra={
            "subject": descriptor(OCI_MANIFEST, subject.manifest),
            "artifactType": SBOM,
            "annotations": {"k": "v"},
        },
    )
    without_type, _ = make_index([subject], extra={"subject": descriptor(OCI_MANIFEST, subject.manifest)})
    for body in (with_type, without_type):
        response = put_manifest(client, "team/app", sha256(body), body, OCI_INDEX)
        assert response.status_code == 201 and response.headers["OCI-Subject"] == subject.digest
    _, manifests = referrers(client, subject.digest)
    by_digest = {d["digest"]: d for d in manifests}
    assert by_digest == {
        sha256(with_type): {
            "mediaType": OCI_INDEX,
            "digest": sha256(with_type),
            "size": len(with_type),
            "artifactType": SBOM,
            "annotations": {"k": "v"},
        },
        # An index without artifactType has none in its descriptor.
        sha256(without_type): {
            "mediaType": OCI_INDEX,
            "digest": sha256(without_type),
            "size": len(without_type),
        },
    }


def test_artifact_type_filter(client, subject):
    sboms = [make_artifact(subject.manifest, artifact_type=SBOM, annotations={"n": str(i)}) for i in range(2)]
    signature = make_artifact(subject.manifest, artifact_type=SIGNATURE)
    for artifact in (*sboms, signature):
        push_referrer(client, "team/app", artifact)
    response, manifests = referrers(client, subject.digest, artifactType=SBOM)
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert sorted(d["digest"] for d in manifests) == sorted(a.digest for a in sboms)
    assert {d["artifactType"] for d in manifests} == {SBOM}
    response, manifests = referrers(client, subject.digest, artifactType="application/none")
    assert response.headers["OCI-Filters-Applied"] == "artifactType" and manifests == []


def test_unknown_subject_is_an_empty_index(client, subject):
    response, manifests = referrers(client, sha256(b"no such manifest"))
    assert manifests == []
    response, manifests = referrers(client, subject.digest, repo="team/never-pushed")
    assert manifests == []


def test_subject_pushed_after_its_referrer(client):
    push_blob(client, "team/app", EMPTY_JSON, mode="post")
    image = make_image()
    artifact = make_artifact(image.manifest)
    response = push_referrer(client, "team/app", artifact)
    assert response.headers["OCI-Subject"] == image.digest
    _, manifests = referrers(client, image.digest)
    assert [d["digest"] for d in manifests] == [artifact.digest]
    push_image(client, "team/app", image, "late")
    _, manifests = referrers(client, image.digest)
    assert [d["digest"] for d in manifests] == [artifact.digest]


@pytest.mark.parametrize("digest", ["sha256:abc", "latest", "sha256:" + "A" * 64, "md5:" + "a" * 32])
def test_invalid_digest(client, digest):
    response = client.get(f"/v2/team/app/referrers/{digest}")
    assert response.status_code == 400
    assert_error(response, 400, "DIGEST_INVALID")


def test_deleting_the_referrer_removes_it(client, subject):
    keep, drop = (
        make_artifact(subject.manifest),
        make_artifact(subject.manifest, artifact_type=SIGNATURE),
    )
    push_referrer(client, "team/app", keep)
    push_referrer(client, "team/app", drop, reference="sig")
    assert client.delete(f"/v2/team/app/manifests/{drop.digest}").status_code == 202
    _, manifests = referrers(client, subject.digest)
    assert [d["digest"] for d in manifests] == [keep.digest]


def test_deleting_only_the_tag_keeps_the_referrer(client, subject):
    artifact = make_artifact(subject.manifest)
    push_referrer(client, "team/app", artifact, reference="sig")
    assert client.delete("/v2/team/app/manifests/sig").status_code == 202
    _, manifests = referrers(client, subject.digest)
    assert [d["digest"] for d in manifests] == [artifact.digest]


def test_referrers_are_per_repository(client, subject):
    push_image(client, "team/other", subject, "v1")
    push_blob(client, "team/other", EMPTY_JSON, mode="post")
    here, there = (
        make_artifact(subject.manifest),
        make_artifact(subject.manifest, artifact_type=SIGNATURE),
    )
    push_referrer(client, "team/app", here)
    push_referrer(client, "team/other", there)
    assert [d["digest"] for d in referrers(client, subject.digest)[1]] == [here.digest]
    assert [d["digest"] for d in referrers(client, subject.digest, repo="team/other")[1]] == [there.digest]


def test_referrer_of_a_referrer(client, subject):
    signature = make_artifact(subject.manifest, artifact_type=SIGNATURE)
    push_referrer(client, "team/app", signature)
    countersignature = make_artifact(signature.manifest, artifact_type=SIGNATURE)
    push_referrer(client, "team/app", countersignature)
    assert [d["digest"] for d in referrers(client, subject.digest)[1]] == [signature.digest]
    assert [d["digest"] for d in referrers(client, signature.digest)[1]] == [countersignature.digest]


def test_large_annotations(client, subject):
    """A referrer whose annotations are too big to ride along in the index still lists them."""
    annotations = {"org.example.payload": "x" * (600 * 1024), "small": "y"}
    artifact = make_artifact(subject.manifest, annotations=annotations)
    push_referrer(client, "team/app", artifact)
    _, manifests = referrers(client, subject.digest)
    assert manifests == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": artifact.digest,
            "size": len(artifact.manifest),
            "artifactType": "application/vnd.example.sbom.v1",
            "annotations": annotations,
        }
    ]
