"""Helpers of the "Using it" tests (issue 14: `skyport scan|sbom|vulns`, the scan extension
endpoint, scan policies): images of scanning/images.py pushed over HTTP and scanned by the
registry's own ScanService on the shipped OSV data, as `skyport scan` scans them.

Expectations are read from the stored report (``ScanService.report``), never written here:
what the OSV data says of each image is the scanner's and matcher's tests' business; these
tests check that what is stored is what is shown, counted and enforced."""

from __future__ import annotations

import hashlib
import json

from oci import OCI_CONFIG, OCI_MANIFEST, descriptor, push_blob
from skyport.registry import Registry
from skyport.scanning.model import SEVERITIES, Report
from skyport.vulnerabilities.mirror import mirror, shipped_data

from scanning.images import DEBIAN_PYTHON, Image

VULNERABLE = DEBIAN_PYTHON  # requests 2.25.0, Jinja2 2.10, openssl 3.0.11: known findings


def mirror_sample_osv(registry: Registry) -> None:
    """The shipped OSV data into the registry's bucket, by the mirror function's code."""
    mirror(str(shipped_data()), registry._objects)


def push_scan_image(client, repository: str, image: Image, reference: str | None = None) -> str:
    """Push one of scanning/images.py's images (its layers, a config, the manifest) over
    the API; its manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    for blob in (config, *(layer.data for layer in image.layers)):
        push_blob(client, repository, blob, mode="post")
    layers = [
        {"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.data)}
        for layer in image.layers
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    response = client.put(
        f"/v2/{repository}/manifests/{reference or digest}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return digest


def push_and_scan(
    client, registry: Registry, repository: str, reference: str = "1.0", image: Image = VULNERABLE
):
    """Push ``image`` as ``repository:reference`` over ``client``, scan it now; (its digest,
    its report)."""
    mirror_sample_osv(registry)
    digest = push_scan_image(client, repository, image, reference)
    results = registry.scanning.scan(repository, digest, force=True)
    assert [result.status for result in results] == ["scanned"], results
    report = registry.scanning.report(repository, digest)
    assert report is not None
    return digest, report


def worst_severity(report: Report) -> str:
    """The highest severity a finding of ``report`` has (UNKNOWN counts for none)."""
    ranked = [level for level in SEVERITIES[1:] if report.at_or_above(level)]
    assert ranked, f"the test image has no finding of a known severity: {report.counts()}"
    return ranked[-1]
