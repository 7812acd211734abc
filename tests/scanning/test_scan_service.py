"""The scan on push, end to end in process: images with known contents (scanning/images.py)
pushed over the HTTP API, the pipeline as deployed (stream -> events -> the scan rule ->
the ScanFunction handler), then what a client sees: the referrers API lists an SBOM and a
report with their artifactTypes and counts, the report holds exactly the findings the
shipped OSV data gives, and scan.completed carries them."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
from oci import OCI_INDEX, descriptor, push_blob
from skyport.events import MANIFEST_PUSHED, SCAN_COMPLETED, SCAN_FAILED
from skyport.registry import Registry
from skyport.scanning.model import REPORT_ARTIFACT_TYPE, SBOM_ARTIFACT_TYPE
from skyport.scanning.service import (
    ALREADY_SCANNED,
    NOTHING_TO_SCAN,
    RUNNING,
    SCANNED,
    SUPERSEDED,
    ScanService,
)
from skyport.storage import keys
from skyport.storage.dynamodb.scans import DynamoScanStore
from skyport_api.app import create_app
from starlette.testclient import TestClient
from vulnerabilities.expected import FINDINGS

from scanning.images import DEBIAN_PYTHON, IMAGES, Layer, gzip_layer
from scanning.scan_support import (
    ScanPipeline,
    image_config,
    image_manifest,
    mirror_sample_osv,
    push_scan_image,
)

REPO = "team/app"


@pytest.fixture
def api(registry: Registry):
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


@pytest.fixture
def pipeline(registry: Registry, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> ScanPipeline:
    mirror_sample_osv(registry)
    return ScanPipeline(registry, moto_endpoint, monkeypatch)


def referrers(client, digest: str, repository: str = REPO) -> list[dict]:
    response = client.get(f"/v2/{repository}/referrers/{digest}")
    assert response.status_code == 200, response.text
    return response.json()["manifests"]


def findings_of(report) -> dict:
    """A report's findings in the shape of vulnerabilities/expected.py's FINDINGS."""
    return {(f.id, f.package): (f.severity, f.fixed_version, f.aliases) for f in report.findings}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_pushed_image_gets_an_sbom_and_a_report_as_referrers(client, registry, pipeline, name):
    digest = push_scan_image(client, REPO, IMAGES[name], "1.0")
    pipeline.run()

    listed = referrers(client, digest)
    assert sorted(entry["artifactType"] for entry in listed) == sorted(
        [SBOM_ARTIFACT_TYPE, REPORT_ARTIFACT_TYPE]
    )
    report_entry = next(entry for entry in listed if entry["artifactType"] == REPORT_ARTIFACT_TYPE)
    report = registry.scanning.report(REPO, digest)
    assert report is not None and report.digest == digest
    # The referrers listing shows the counts without the report being fetched.
    for severity, count in report.counts().items():
        assert report_entry["annotations"][f"io.skyport.scan.{severity.lower()}"] == str(count)
    assert "org.opencontainers.image.created" in report_entry["annotations"]
    # Exactly what the shipped OSV data says of the image's packages.
    assert findings_of(report) == FINDINGS[name]

    # The SBOM is served as any blob: its manifest by digest, its layer the CycloneDX JSON.
    sbom_entry = next(entry for entry in listed if entry["artifactType"] == SBOM_ARTIFACT_TYPE)
    manifest = client.get(f"/v2/{REPO}/manifests/{sbom_entry['digest']}").json()
    assert manifest["subject"]["digest"] == digest
    assert registry.scanning.sbom(REPO, digest) is not None

    (completed,) = pipeline.of_type(SCAN_COMPLETED)
    assert completed.digest == digest and completed.counts == report.counts()
    assert completed.report_digest == report_entry["digest"] and completed.sbom_digest == sbom_entry["digest"]
    assert completed.new_findings is None
    # Our own pushes came back as manifest.pushed events and were never scanned.
    assert [event.digest for event in pipeline.delivered] == [digest]
    assert {event.digest for event in pipeline.of_type(MANIFEST_PUSHED)} >= {
        sbom_entry["digest"],
        report_entry["digest"],
    }


def test_an_index_of_two_platforms_gives_two_scans(api, registry, pipeline):
    platforms = [IMAGES["debian-python"], IMAGES["alpine-node"]]
    children = []
    for image in platforms:
        config = image_config(image)
        push_scan_image(api, REPO, image)
        children.append(image_manifest(image, config))
    # An attestation manifest next to them, as buildx pushes one: never scanned.
    attestation_config, statement = b'{"architecture":"unknown","os":"unknown"}', b'{"_type":"statement"}'
    push_blob(api, REPO, attestation_config, mode="post")
    push_blob(api, REPO, statement, mode="post")
    attestation = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
        + json.dumps(descriptor("application/vnd.oci.image.config.v1+json", attestation_config))
        + ',"layers":['
        + json.dumps(descriptor("application/vnd.in-toto+json", statement))
        + "]}"
    ).encode()
    assert (
        api.put(
            f"/v2/{REPO}/manifests/sha256:{hashlib.sha256(attestation).hexdigest()}",
            content=attestation,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ).status_code
        == 201
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                children[0],
                platform={"architecture": "amd64", "os": "linux"},
            ),
            descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                children[1],
                platform={"architecture": "arm64", "os": "linux"},
            ),
            descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                attestation,
                platform={"architecture": "unknown", "os": "unknown"},
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ],
    }
    body = json.dumps(index).encode()
    assert (
        api.put(f"/v2/{REPO}/manifests/multi", content=body, headers={"Content-Type": OCI_INDEX}).status_code
        == 201
    )
    pipeline.run()

    digests = registry.scanning.platform_digests(REPO, "multi")
    assert len(digests) == 2
    assert len(pipeline.of_type(SCAN_COMPLETED)) == 2
    assert {event.digest for event in pipeline.of_type(SCAN_COMPLETED)} == set(digests)
    for digest in digests:
        assert len(referrers(api, digest)) == 2
    attestation_digest = "sha256:" + hashlib.sha256(attestation).hexdigest()
    assert referrers(api, attestation_digest) == []
    assert registry.scanning.record(REPO, attestation_digest) is None


def test_a_second_push_of_the_same_image_starts_no_scan(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    pipeline.run()
    first = registry.scanning.record(REPO, digest)
    assert first is not None and first.status == "complete"

    push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    push_scan_image(api, REPO, DEBIAN_PYTHON, "latest")
    since = len(pipeline.events)
    pipeline.run()
    assert pipeline.of_type(SCAN_COMPLETED, since) == []
    assert registry.scanning.record(REPO, digest) == first
    assert len(referrers(api, digest)) == 2
    # Asked again (an event delivered twice): already scanned, nothing done.
    (result,) = registry.scanning.scan(REPO, digest)
    assert result.status == ALREADY_SCANNED and result.report_digest == first.report_digest


def test_a_forced_rescan_replaces_the_report_and_keeps_the_sbom(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    pipeline.run()
    before = registry.scanning.record(REPO, digest)
    time.sleep(1.1)  # a report names the second it was made in: a new one, a new digest

    (result,) = registry.scanning.scan(REPO, digest, force=True)
    assert result.status == SCANNED
    assert result.sbom_digest == before.sbom_digest
    assert result.report_digest != before.report_digest
    assert result.new_findings == ()  # the same data: nothing new
    # The previous report is gone; the listing holds the SBOM and the new report only.
    assert api.get(f"/v2/{REPO}/manifests/{before.report_digest}").status_code == 404
    listed = {entry["artifactType"]: entry["digest"] for entry in referrers(api, digest)}
    assert listed == {SBOM_ARTIFACT_TYPE: before.sbom_digest, REPORT_ARTIFACT_TYPE: result.report_digest}

    since = len(pipeline.events)
    pipeline.run()
    (completed,) = pipeline.of_type(SCAN_COMPLETED, since)
    assert completed.new_findings == () and completed.report_digest == result.report_digest


def test_concurrent_scan_events_start_one_scan(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    results: list = []
    barrier = threading.Barrier(8)

    def scan() -> None:
        barrier.wait()
        results.extend(registry.scanning.scan(REPO, digest))

    threads = [threading.Thread(target=scan) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(result.status for result in results)
    assert statuses.count(SCANNED) == 1
    assert set(statuses) <= {SCANNED, ALREADY_SCANNED, RUNNING}
    pipeline.run()
    assert len(pipeline.of_type(SCAN_COMPLETED)) == 1
    assert len(referrers(api, digest)) == 2


def test_an_unreadable_layer_fails_or_skips_and_changes_nothing_else(api, registry, pipeline, storage):
    good = push_scan_image(api, "team/other", DEBIAN_PYTHON, "1.0")
    pipeline.run()
    corrupt = Layer(b"\x1f\x8b\x08\x00" + b"\xff" * 4096, "application/vnd.oci.image.layer.v1.tar+gzip")
    hostile = type(DEBIAN_PYTHON)(
        layers=(gzip_layer({"etc/os-release": b"ID=debian\nVERSION_ID=12\n"}), corrupt),
        distro=None,
        packages=frozenset(),
        absent=frozenset(),
    )
    digest = push_scan_image(api, REPO, hostile, "bad")
    before_other = registry.scanning.record("team/other", good)
    manifest_before = api.get(f"/v2/{REPO}/manifests/bad").content
    since = len(pipeline.events)
    pipeline.run()

    failed = pipeline.of_type(SCAN_FAILED, since)
    completed = pipeline.of_type(SCAN_COMPLETED, since)
    assert len(failed) + len(completed) == 1
    if completed:
        report = registry.scanning.report(REPO, digest)
        assert report is not None and any(gap.layer == corrupt.digest for gap in report.skipped)
    else:
        assert failed[0].error and failed[0].digest == digest
        assert referrers(api, digest) == [] or all(
            entry["artifactType"] == SBOM_ARTIFACT_TYPE for entry in referrers(api, digest)
        )
    # Nothing else changed: the image, its tag, the other repository and its scan.
    assert api.get(f"/v2/{REPO}/manifests/bad").content == manifest_before
    assert registry.scanning.record("team/other", good) == before_other
    assert len(referrers(api, good, "team/other")) == 2


def test_an_image_no_layer_of_which_can_be_read_is_a_failed_scan_without_referrers(api, registry, pipeline):
    """Layers of random bytes (the conformance suite's images, test tools' artifacts): no
    SBOM of nothing and no clean-looking report, so a referrers listing holds only what the
    pusher put there; scan.failed says why. One readable layer is enough for a report."""
    noise = Layer(b"\x00\x01 not a tar, nor gzip, nor zstd " * 64, "application/vnd.oci.image.layer.v1.tar")
    unreadable = type(DEBIAN_PYTHON)(layers=(noise,), distro=None, packages=frozenset(), absent=frozenset())
    digest = push_scan_image(api, REPO, unreadable, "noise")
    since = len(pipeline.events)
    pipeline.run()

    assert referrers(api, digest) == []
    (failed,) = pipeline.of_type(SCAN_FAILED, since)
    assert failed.digest == digest and "no layer of the image could be read" in failed.error
    assert not pipeline.of_type(SCAN_COMPLETED, since)
    assert registry.scanning.report(REPO, digest) is None

    readable = type(DEBIAN_PYTHON)(
        layers=(noise, gzip_layer({"etc/os-release": b"ID=debian\nVERSION_ID=12\n"})),
        distro=None,
        packages=frozenset(),
        absent=frozenset(),
    )
    partly = push_scan_image(api, REPO, readable, "partly")
    pipeline.run()
    assert sorted(entry["artifactType"] for entry in referrers(api, partly)) == sorted(
        [SBOM_ARTIFACT_TYPE, REPORT_ARTIFACT_TYPE]
    )
    report = registry.scanning.report(REPO, partly)
    assert report is not None and any(gap.layer == noise.digest for gap in report.skipped)


def test_an_image_manifest_without_layers_is_not_scanned(api, registry, pipeline):
    """A config-only image manifest (the conformance suite's referrers subject) holds no
    software: no scan, no scan event, and its referrers are exactly what was pushed."""
    empty = type(DEBIAN_PYTHON)(layers=(), distro=None, packages=frozenset(), absent=frozenset())
    digest = push_scan_image(api, REPO, empty, "config-only")
    since = len(pipeline.events)
    pipeline.run()

    assert referrers(api, digest) == []
    assert not pipeline.of_type(SCAN_FAILED, since) and not pipeline.of_type(SCAN_COMPLETED, since)
    assert registry.scanning.record(REPO, digest) is None

    # Layers that are empty tars (the suite's "empty layer" image): read, nothing to report.
    hollow = type(DEBIAN_PYTHON)(
        layers=(gzip_layer({}),), distro=None, packages=frozenset(), absent=frozenset()
    )
    digest = push_scan_image(api, REPO, hollow, "empty-layer")
    since = len(pipeline.events)
    pipeline.run()
    assert referrers(api, digest) == []
    assert not pipeline.of_type(SCAN_FAILED, since) and not pipeline.of_type(SCAN_COMPLETED, since)
    assert registry.scanning.record(REPO, digest) is None
    assert [result.status for result in registry.scanning.scan(REPO, digest)] == [NOTHING_TO_SCAN]


def test_a_manifest_deleted_before_its_scan_is_not_scanned(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON)
    assert api.delete(f"/v2/{REPO}/manifests/{digest}").status_code == 202
    pipeline.run()
    assert pipeline.delivered and all(
        response == {"batchItemFailures": []} for response in pipeline.responses
    )
    assert pipeline.of_type(SCAN_COMPLETED) == [] and pipeline.of_type(SCAN_FAILED) == []
    assert referrers(api, digest) == []
    assert registry.scanning.record(REPO, digest) is None


def test_the_manifest_delete_removes_its_scan_record(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    pipeline.run()
    assert registry.scanning.record(REPO, digest) is not None
    assert api.delete(f"/v2/{REPO}/manifests/{digest}").status_code == 202
    assert registry.scanning.record(REPO, digest) is None
    item = registry.clients.dynamodb.get_item(
        TableName=registry.settings.table, Key=keys.scan_record(REPO, digest)
    )
    assert "Item" not in item


def test_scan_on_push_off_scans_nothing_on_push(api, registry, pipeline, monkeypatch):
    from dataclasses import replace

    off = Registry(replace(registry.settings, scan_on_push=False), clients=registry.clients)
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")
    (pushed,) = [event for event in pipeline.new_events() if event.type == MANIFEST_PUSHED]
    assert off.scanning.on_event(pushed) == []
    assert off.scanning.record(REPO, digest) is None
    # `skyport scan` still works.
    (result,) = off.scanning.scan(REPO, digest)
    assert result.status == SCANNED


def test_a_manifest_deleted_during_its_scan_leaves_nothing_behind(api, registry, pipeline):
    digest = push_scan_image(api, REPO, DEBIAN_PYTHON, "1.0")

    def database_after_a_delete():
        # The SBOM is pushed by now; the image goes before the report is.
        assert api.delete(f"/v2/{REPO}/manifests/{digest}").status_code == 202
        return registry.osv_database

    service = ScanService(
        registry._objects,
        registry.manifests,
        registry.blobs,
        registry._manifest_index,
        DynamoScanStore(registry.clients.dynamodb, registry.settings.table),
        registry.settings,
        database=database_after_a_delete,
    )
    (result,) = service.scan(REPO, digest)
    assert result.status == SUPERSEDED
    assert referrers(api, digest) == []
    assert registry.scanning.record(REPO, digest) is None
    # Every manifest the scan pushed went again: nothing is left in the repository.
    left = registry.clients.dynamodb.query(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :manifest)",
        ExpressionAttributeValues={
            ":pk": {"S": keys.repository_partition(REPO)},
            ":manifest": {"S": "MANIFEST#"},
        },
    )["Items"]
    assert left == []
    pipeline.run()
    assert pipeline.of_type(SCAN_COMPLETED) == [] and pipeline.of_type(SCAN_FAILED) == []
