"""Garbage collection through its public surfaces: HTTP pushes, then `skyport gc`."""

from __future__ import annotations

import json
import time
import uuid

from gc_support import assert_pullable, items, object_keys, skyport_gc, skyport_gc_json
from oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    descriptor,
    make_image,
    make_index,
    push_blob,
    push_image,
    sha256,
)

# S3's LastModified counts whole seconds: an object is older than a grace-0 cutoff only
# once its second has passed (skyport/gc/collector.py).
LAST_MODIFIED_RESOLUTION = 1.05


def _links(registry) -> set[tuple[str, str]]:
    return {
        (pk[len("REPO#") :], sk[len("BLOB#") :])
        for pk, sk in items(registry, "REPO#")
        if sk.startswith("BLOB#")
    }


def _blobs(registry) -> set[str]:
    return {pk[len("BLOB#") :] for pk, _ in items(registry, "BLOB#")}


def test_gc_removes_exactly_the_unreferenced_blobs_and_keeps_shared_layers(http, registry):
    kept = make_image((1000, 2000))
    # The deleted image shares kept's first layer: that layer stays.
    other = make_image((3000,))
    gone = _image(other.config, [other.layers[0], kept.layers[0]])
    push_image(http, "team/app", kept, "v1")
    push_image(http, "team/old", gone, "v1")
    stray = push_blob(http, "team/app", b"uploaded, never referenced", mode="post")
    assert http.delete(f"/v2/team/old/manifests/{gone.digest}").status_code == 202

    report = skyport_gc_json(registry, "--grace", "0")

    assert report["complete"] and not report["dry_run"]
    unique_gone = {sha256(gone.config), sha256(gone.layers[0])}
    assert _links(registry) == {("team/app", sha256(blob)) for blob in (kept.config, *kept.layers)}
    assert _blobs(registry) == {sha256(blob) for blob in (kept.config, *kept.layers)}
    assert report["removed"] == {"manifests": 0, "links": 4, "blobs": 3, "objects": 0}
    assert report["bytes"]["blobs"] == len(gone.config) + 3000 + len(b"uploaded, never referenced")
    assert {entry["digest"] for entry in report["listed"]["blobs"]} == unique_gone | {stray}
    assert len(object_keys(registry, "blobs/")) == 3
    assert_pullable(http, "team/app", "v1")
    # A second run finds nothing more.
    again = skyport_gc_json(registry, "--grace", "0")
    assert again["removed"] == {"manifests": 0, "links": 0, "blobs": 0, "objects": 0}
    assert_pullable(http, "team/app", "v1")


def _image(config: bytes, layers: list[bytes]) -> Image:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    return Image(config, layers, json.dumps(manifest).encode(), OCI_MANIFEST)


def test_the_grace_period_keeps_what_was_used_recently(http, registry):
    image = make_image((1000,))
    push_image(http, "team/app", image, "v1")
    push_blob(http, "team/app", b"fresh and unreferenced", mode="post")
    assert http.delete(f"/v2/team/app/manifests/{image.digest}").status_code == 202

    report = skyport_gc_json(registry, "--grace", "1h")

    assert report["removed"] == {"manifests": 0, "links": 0, "blobs": 0, "objects": 0}
    assert len(_blobs(registry)) == 3


def test_dry_run_changes_nothing_and_lists_what_would_go(http, registry, storage):
    image = make_image((1000, 2000))
    push_image(http, "team/app", image, "v1")
    assert http.delete(f"/v2/team/app/manifests/{image.digest}").status_code == 202
    registry.clients.s3.put_object(
        Bucket=registry.settings.bucket, Key=f"blobs/{uuid.uuid4()}", Body=b"x" * 10
    )
    time.sleep(LAST_MODIFIED_RESOLUTION)  # older than the cutoff by S3's clock too
    before = storage.snapshot()

    report = skyport_gc_json(registry, "--dry-run", "--grace", "0")

    assert storage.snapshot() == before
    assert report["dry_run"] and report["removed"] == {"manifests": 0, "links": 3, "blobs": 3, "objects": 1}
    assert report["total_bytes"] == len(image.config) + 3000 + 10
    status, text = skyport_gc(registry, "--dry-run", "--grace", "0")
    assert status == 0 and "would remove: 3 links, 3 blobs" in text and "nothing was written" in text
    assert storage.snapshot() == before
    # The real run removes what the dry run listed.
    assert skyport_gc_json(registry, "--grace", "0")["removed"] == report["removed"]


def test_crash_leftovers_are_found_and_only_those(http, registry):
    image = make_image((1000,))
    push_image(http, "team/app", image, "v1")
    s3 = registry.clients.s3
    bucket = registry.settings.bucket
    orphan, tail = f"blobs/{uuid.uuid4()}", f"uploads/{uuid.uuid4()}/tail-5-w"
    s3.put_object(Bucket=bucket, Key=orphan, Body=b"a crash left me")
    s3.put_object(Bucket=bucket, Key=tail, Body=b"tail")
    # An open upload's tail is the upload's: never collected while its session exists.
    started = http.post("/v2/team/app/blobs/uploads/")
    upload_id = started.headers["Docker-Upload-UUID"]
    live_tail = f"uploads/{upload_id}/tail-3-w"
    s3.put_object(Bucket=bucket, Key=live_tail, Body=b"abc")
    time.sleep(LAST_MODIFIED_RESOLUTION)  # older than the cutoff by S3's clock too

    report = skyport_gc_json(registry, "--grace", "0")

    assert report["removed"] == {"manifests": 0, "links": 0, "blobs": 0, "objects": 2}
    assert {entry["key"] for entry in report["listed"]["objects"]} == {orphan, tail}
    assert orphan not in object_keys(registry) and tail not in object_keys(registry)
    assert live_tail in object_keys(registry)
    assert_pullable(http, "team/app", "v1")


def test_an_index_keeps_its_children_and_their_layers(http, registry):
    images = [make_image((500,)), make_image((600,))]
    for image in images:
        push_image(http, "team/multi", image)
    index, media_type = make_index(images)
    response = http.put(
        "/v2/team/multi/manifests/latest", content=index, headers={"Content-Type": media_type}
    )
    assert response.status_code == 201, response.text

    report = skyport_gc_json(registry, "--grace", "0")

    assert report["removed"] == {"manifests": 0, "links": 0, "blobs": 0, "objects": 0}
    assert_pullable(http, "team/multi", "latest")


def test_a_blob_removed_by_gc_is_uploaded_again_as_new(http, registry):
    data = b"pushed, unreferenced, collected, pushed again"
    digest = push_blob(http, "team/app", data, mode="post")
    assert skyport_gc_json(registry, "--grace", "0")["removed"]["blobs"] == 1
    # A mount of the collected blob is not possible any more: the client uploads it.
    assert http.post(f"/v2/team/other/blobs/uploads/?mount={digest}&from=team/app").status_code == 202
    push_blob(http, "team/other", data, mode="post")
    blob = http.get(f"/v2/team/other/blobs/{digest}")
    assert blob.status_code == 307


def test_without_a_registry_named_gc_says_how_to_name_one(registry, tmp_path, monkeypatch, capsys):
    from skyport_cli.main import main

    monkeypatch.chdir(tmp_path)
    try:
        main(["gc", "--table", registry.settings.table])
    except SystemExit as exit_:
        assert exit_.code == 1
    assert "--bucket" in capsys.readouterr().err


def _referrer(http, repository: str, subject: Image) -> str:
    """An artifact (a signature, say) whose subject is ``subject``, pushed by digest."""
    blob = b"signature of " + subject.digest.encode()
    push_blob(http, repository, blob, mode="post")
    empty = b"{}"
    push_blob(http, repository, empty, mode="post")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [descriptor("application/vnd.example.signature", blob)],
            "subject": descriptor(OCI_MANIFEST, subject.manifest),
        }
    ).encode()
    response = http.put(
        f"/v2/{repository}/manifests/{sha256(body)}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return sha256(body)


def _manifests(registry) -> set[tuple[str, str]]:
    return {(pk[5:], sk[9:]) for pk, sk in items(registry, "REPO#") if sk.startswith("MANIFEST#")}


def test_untagged_manifests_go_only_when_asked_and_only_those(http, registry):
    tagged, untagged = make_image((100,)), make_image((200,))
    children = [make_image((300,)), make_image((400,))]
    push_image(http, "team/app", tagged, "v1")
    push_image(http, "team/app", untagged)  # by digest only
    for child in children:
        push_image(http, "team/app", child)
    index, media_type = make_index(children)
    assert (
        http.put(
            "/v2/team/app/manifests/multi", content=index, headers={"Content-Type": media_type}
        ).status_code
        == 201
    )
    signature = _referrer(http, "team/app", tagged)  # its subject is there: kept
    orphaned = _referrer(http, "team/app", untagged)  # its subject goes in this run
    push_image(http, "team/lonely", make_image((50,)))  # a repository of one untagged image
    before = _manifests(registry)

    assert skyport_gc_json(registry, "--grace", "0")["removed"]["manifests"] == 0
    assert _manifests(registry) == before

    report = skyport_gc_json(registry, "--grace", "0", "--untagged")

    gone = {("team/app", untagged.digest)} | {m for m in before if m[0] == "team/lonely"}
    assert report["removed"]["manifests"] == 2
    assert _manifests(registry) == before - gone
    assert ("CATALOG", "REPO#team/lonely") not in items(registry, "CATALOG")
    assert ("CATALOG", "REPO#team/app") in items(registry, "CATALOG")
    # The untagged image's blobs went in the same run; what stays is pullable.
    assert http.get(f"/v2/team/app/blobs/{sha256(untagged.layers[0])}").status_code == 404
    assert_pullable(http, "team/app", "v1")
    assert_pullable(http, "team/app", "multi")
    referrers = http.get(f"/v2/team/app/referrers/{tagged.digest}").json()["manifests"]
    assert [entry["digest"] for entry in referrers] == [signature]
    # The next run finds the referrer whose subject went, and its referrers entry goes with it.
    again = skyport_gc_json(registry, "--grace", "0", "--untagged")
    assert [entry["digest"] for entry in again["listed"]["manifests"]] == [orphaned]
    assert http.get(f"/v2/team/app/referrers/{untagged.digest}").json()["manifests"] == []


def test_untagged_manifests_within_the_grace_period_stay(http, registry):
    push_image(http, "team/app", make_image((100,)))
    report = skyport_gc_json(registry, "--grace", "1h", "--untagged")
    assert report["removed"]["manifests"] == 0 and report["kept"]["manifests"] == 1
