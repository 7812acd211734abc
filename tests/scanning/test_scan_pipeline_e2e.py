"""End to end: `skyport serve` (as `make run` starts it: the hooks pipeline on, the shipped
OSV data mirrored at start), skopeo copying an OCI layout of a fabricated Debian + Python
image to it; within seconds the referrers API lists its SBOM and its vulnerability report,
the report's counts in the listing, and `oras discover`-style tools would find them there."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e.clients import TRANSFER_TIMEOUT, Client
from e2e.conftest import (
    READY_TIMEOUT,
    REGISTRY_ENV,
    _free_port,
    _log_tail,
    _stop,
    _wait_ready,
    skopeo,  # noqa: F401 - the fixture, as tests/e2e drives skopeo
    spawn_server,
)
from e2e.conftest import Registry as Served
from machine import cannot_run
from skyport.scanning.model import REPORT_ARTIFACT_TYPE, SBOM_ARTIFACT_TYPE
from vulnerabilities.expected import FINDINGS

from scanning.images import DEBIAN_PYTHON
from scanning.scan_support import image_config, image_manifest

pytestmark = pytest.mark.e2e

WITHIN_SECONDS = 30.0  # "within seconds", with room for a loaded 2-core machine


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Served]:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(f"runs its own registry (its scan pipeline), not the one {REGISTRY_ENV} names")
    base = tmp_path_factory.mktemp("scan-registry")
    port = _free_port()
    log = base / "skyport.log"
    proc, argv, _ = spawn_server(request, port, log, SKYPORT_STATE_DIR=str(base / "state"))
    server = Served(host=f"127.0.0.1:{port}", proc=proc, log=log)
    try:
        why = _wait_ready(server, time.monotonic() + READY_TIMEOUT)
        if why:
            pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
        yield server
    finally:
        _stop(proc, "the registry")


def oci_layout(path: Path, tag: str) -> str:
    """DEBIAN_PYTHON as an OCI image layout on disk; the manifest's digest."""
    config = image_config(DEBIAN_PYTHON)
    manifest = image_manifest(DEBIAN_PYTHON, config)
    digests = []
    for blob in (config, *(layer.data for layer in DEBIAN_PYTHON.layers), manifest):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        target = path / "blobs" / "sha256" / digest.split(":", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        digests.append(digest)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digests[-1],
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    return digests[-1]


def test_a_skopeo_push_gets_its_sbom_and_report_as_referrers_within_seconds(
    served: Served,
    skopeo: Client,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
):
    digest = oci_layout(tmp_path / "layout", "1.0")
    started = time.monotonic()
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'layout'}:1.0",
        f"docker://{served.host}/scan/debian-python:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    listed: list = []
    with httpx.Client(base_url=served.url, trust_env=False, timeout=10) as http:
        while time.monotonic() - started < WITHIN_SECONDS and len(listed) < 2:
            listed = http.get(f"/v2/scan/debian-python/referrers/{digest}").json()["manifests"]
            time.sleep(0.5)
        assert sorted(entry["artifactType"] for entry in listed) == sorted(
            [SBOM_ARTIFACT_TYPE, REPORT_ARTIFACT_TYPE]
        ), _log_tail(served.log)
        report_entry = next(entry for entry in listed if entry["artifactType"] == REPORT_ARTIFACT_TYPE)
        # The counts ride in the listing; the report itself is a blob like any other.
        expected = FINDINGS["debian-python"]
        counted = sum(
            int(report_entry["annotations"][f"io.skyport.scan.{s}"])
            for s in ("unknown", "low", "medium", "high", "critical")
        )
        assert counted == len(expected)
        manifest = http.get(
            f"/v2/scan/debian-python/manifests/{report_entry['digest']}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        (layer,) = manifest["layers"]
        blob = http.get(f"/v2/scan/debian-python/blobs/{layer['digest']}", follow_redirects=True)
        assert blob.status_code == 200
        report = blob.json()
        assert {(f["id"], f["package"]) for f in report["findings"]} == set(expected)
