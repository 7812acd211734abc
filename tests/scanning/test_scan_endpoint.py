"""The scan extension endpoint (issue 14; routes/scanning.py): GET
/v2/<name>/_skyport/scan/<reference> and /_skyport/sbom/<reference>, through every
``client`` flavour (ASGI, the Lambda event path, the deployed topology): what the scan
stored, as JSON for a UI; errors in the spec's envelope for hostile or unknown input; and
pull permission with auth on."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from harness import api_behind_lambda
from oci import OCI_INDEX, assert_error, descriptor, make_artifact, make_image, push_image, put_manifest
from skyport.registry import Registry
from skyport.scanning.model import SBOM_ARTIFACT_TYPE, SEVERITIES
from skyport_api.app import create_app
from starlette.testclient import TestClient

from scanning.using_support import push_and_scan

REPO = "team/app"


def scan_url(reference: str, repository: str = REPO) -> str:
    return f"/v2/{repository}/_skyport/scan/{reference}"


def sbom_url(reference: str, repository: str = REPO) -> str:
    return f"/v2/{repository}/_skyport/sbom/{reference}"


def test_the_scan_of_an_image_by_tag_and_by_digest(client, registry):
    digest, report = push_and_scan(client, registry, REPO)
    record = registry.scanning.record(REPO, digest)
    for reference in ("1.0", digest):
        response = client.get(scan_url(reference))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["repository"] == REPO and body["digest"] == digest
        assert body["status"] == "complete"
        assert body["scannedAt"] == report.scanned_at
        assert body["counts"] == report.counts() and list(body["counts"]) == list(SEVERITIES)
        assert body["report"] == report.to_dict()
        assert (body["sbomDigest"], body["reportDigest"]) == (record.sbom_digest, record.report_digest)


def test_the_sbom_of_an_image(client, registry):
    digest, _ = push_and_scan(client, registry, REPO)
    response = client.get(sbom_url("1.0"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == SBOM_ARTIFACT_TYPE
    assert response.headers["skyport-image-digest"] == digest
    assert response.content == registry.scanning.sbom(REPO, digest)
    assert json.loads(response.content)["bomFormat"] == "CycloneDX"


def test_an_index_lists_its_platform_images(client, registry):
    digest, report = push_and_scan(client, registry, REPO)
    child = client.get(f"/v2/{REPO}/manifests/{digest}").content
    raw = make_image()  # a second platform, never scanned
    push_image(client, REPO, raw)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(
                    "application/vnd.oci.image.manifest.v1+json",
                    child,
                    platform={"os": "linux", "architecture": "amd64"},
                ),
                descriptor(
                    raw.media_type,
                    raw.manifest,
                    platform={"os": "linux", "architecture": "arm", "variant": "v7"},
                ),
            ],
        }
    ).encode()
    assert put_manifest(client, REPO, "multi", index, OCI_INDEX).status_code == 201
    body = client.get(scan_url("multi")).json()
    assert body["mediaType"] == OCI_INDEX
    by_platform = {entry["platform"]: entry for entry in body["manifests"]}
    assert set(by_platform) == {"linux/amd64", "linux/arm/v7"}
    assert by_platform["linux/amd64"]["digest"] == digest
    assert by_platform["linux/amd64"]["report"] == report.to_dict()
    assert by_platform["linux/arm/v7"]["status"] == "not-scanned"
    assert by_platform["linux/arm/v7"]["report"] is None
    # The SBOM of an index: one platform's, named.
    response = client.get(sbom_url("multi") + "?platform=linux/amd64")
    assert response.status_code == 200 and response.headers["skyport-image-digest"] == digest
    error = assert_error(client.get(sbom_url("multi")), 404, "SCAN_UNKNOWN")
    assert "name a platform" in error["message"]
    assert_error(client.get(sbom_url("multi") + "?platform=linux/amd64%0d%0aX: y"), 404, "SCAN_UNKNOWN")
    assert_error(client.get(sbom_url("multi") + "?platform=linux/arm/v7"), 404, "SCAN_UNKNOWN")


def test_an_image_not_scanned_yet_and_an_artifact(client, registry):
    image = make_image()
    push_image(client, REPO, image, "raw")
    for url in (scan_url("raw"), sbom_url("raw"), scan_url(image.digest)):
        error = assert_error(client.get(url), 404, "SCAN_UNKNOWN")
        assert "not been scanned yet" in error["message"] or "no SBOM yet" in error["message"]
    artifact = make_artifact(image.manifest, blobs=(b"signature",))
    push_image(client, REPO, artifact)
    error = assert_error(client.get(scan_url(artifact.digest)), 404, "SCAN_UNKNOWN")
    assert "not a container image" in error["message"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/nothing/here/_skyport/scan/1.0", 404, "NAME_UNKNOWN"),
        ("/v2/nothing/here/_skyport/sbom/1.0", 404, "NAME_UNKNOWN"),
        ("/v2/Team/App/_skyport/scan/1.0", 400, "NAME_INVALID"),
        ("/v2/team/.hidden/_skyport/scan/1.0", 400, "NAME_INVALID"),
        ("/v2/team//app/_skyport/sbom/1.0", 400, "NAME_INVALID"),
        ("/v2/team/_skyport/_skyport/scan/1.0", 400, "NAME_INVALID"),
        ("/v2/team/%2e%2e/_skyport/scan/1.0", 400, "NAME_INVALID"),
        ("/v2/team/app/_skyport/scan/sha256:zz", 400, "DIGEST_INVALID"),
        ("/v2/team/app/_skyport/scan/sha256:" + "\u0661" * 64, 400, "DIGEST_INVALID"),
        ("/v2/team/app/_skyport/scan/" + "a" * 300, 404, "MANIFEST_UNKNOWN"),
        ("/v2/team/app/_skyport/scan/v%0a1", 404, "MANIFEST_UNKNOWN"),
        ("/v2/team/app/_skyport/scan/nope", 404, "MANIFEST_UNKNOWN"),
        ("/v2/team/app/_skyport/sbom/nope", 404, "MANIFEST_UNKNOWN"),
    ],
)
def test_hostile_and_unknown_references_get_the_envelope(client, storage, path, status, code):
    push_image(client, REPO, make_image(), "1.0")
    before = storage.snapshot()
    response = client.get(path)
    assert_error(response, status, code)
    assert storage.snapshot() == before


def test_other_methods_are_unsupported(client):
    push_image(client, REPO, make_image(), "1.0")
    for method in ("put", "delete", "post"):
        response = getattr(client, method)(scan_url("1.0"))
        assert_error(response, 405, "UNSUPPORTED")


PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


@pytest.mark.parametrize("flavour", ["asgi", "lambda"])
def test_the_endpoint_needs_pull_on_the_repository(registry, template, flavour):
    auth_registry = Registry(replace(registry.settings, auth="on"), clients=registry.clients)
    identities = auth_registry.identities
    identities.add_user("root", PASSWORDS["root"], admin=True)
    identities.add_user("alice", PASSWORDS["alice"])
    identities.grant("team/*", "alice", ["pull"])
    with TestClient(create_app(auth_registry), headers=basic("root"), follow_redirects=False) as admin:
        push_image(admin, REPO, make_image(), "1.0")
        push_image(admin, "secret/app", make_image(), "1.0")
    app = create_app(auth_registry) if flavour == "asgi" else api_behind_lambda(auth_registry, template)
    with TestClient(app, follow_redirects=False) as client:
        # alice may pull team/app: she gets the endpoint's answer (not scanned yet).
        assert_error(client.get(scan_url("1.0"), headers=basic("alice")), 404, "SCAN_UNKNOWN")
        for url in (scan_url("1.0", "secret/app"), sbom_url("1.0", "secret/app")):
            refused = client.get(url, headers=basic("alice"))
            assert refused.status_code in (401, 403) and "bomFormat" not in refused.text
            anonymous = client.get(url)
            assert anonymous.status_code == 401 and "scope=" in anonymous.headers["www-authenticate"]
