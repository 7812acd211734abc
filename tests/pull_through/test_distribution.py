"""The cache in front of Distribution (Debian's `docker-registry`, on its filesystem
driver, anonymous): manifests miss then hit; a blob miss is a redirect to Distribution's
own blob URL (case b: it serves bytes itself), filled into S3; the second pull touches no
upstream; with Distribution stopped, the cached tag still pulls, with a Warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import urllib3
from direct.running import free_port
from machine import cannot_run
from oci import OCI_MANIFEST, fetch, make_image, sha256
from skyport.distribution_client import RegistryClient
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import wait_for, with_settings

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
  secret: skyport-test
"""


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[subprocess.Popen]:
    if shutil.which("docker-registry") is None:
        cannot_run("docker-registry (Debian package) is not installed: scripts/install-system-deps.sh")
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(root=tmp_path / "storage", port=port))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    http = urllib3.PoolManager(retries=False, timeout=2)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if http.request("GET", f"{process.url}/v2/").status == 200:  # type: ignore[attr-defined]
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                cannot_run(
                    f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_pull_through_distribution(registry, distribution):
    url = distribution.url
    image = make_image((1500, 2500))
    upstream = RegistryClient(url.removeprefix("http://"), "library/busybox")
    for blob in (image.config, *image.layers):
        upstream.upload_blob(sha256(blob), [blob])
    upstream.put_manifest("1.36", image.media_type, image.manifest)
    digest = image.digest
    registry.cache_rules.add("dist", url)
    cache = with_settings(registry, cache_tag_recheck_seconds=0)
    with TestClient(create_app(cache), follow_redirects=False) as client:
        path = "/v2/dist/busybox/manifests/1.36"  # not Docker Hub: no library/ added
        assert client.get(path, headers={"Accept": OCI_MANIFEST}).status_code == 404
        path = "/v2/dist/library/busybox/manifests/1.36"
        response = client.get(path, headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest
        for layer in image.layers:
            blob = client.get(f"/v2/dist/library/busybox/blobs/{sha256(layer)}")
            assert blob.status_code == 307
            assert blob.headers["Location"] == f"{url}/v2/library/busybox/blobs/{sha256(layer)}"
            assert httpx.get(blob.headers["Location"]).content == layer
        fills = cache.cache_fill.launcher
        wait_for(lambda: fills.tally["filled"] == len(image.layers))
        assert set(fills.tally) <= {"filled", "present"}, fills.tally  # each layer copied once
        # Distribution stopped: the tag still pulls (stale, with a Warning), blobs from S3.
        distribution.terminate()
        distribution.wait(10)
        response = client.get(path, headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200 and response.content == image.manifest
        assert response.headers["Warning"].startswith('110 - "Response is Stale')
        for layer in image.layers:
            blob = client.get(f"/v2/dist/library/busybox/blobs/{sha256(layer)}")
            assert blob.status_code == 307 and registry.settings.bucket in blob.headers["Location"]
            assert fetch(blob.headers["Location"]) == layer
        # Never cached, upstream down: 503 with Retry-After.
        missing = client.get("/v2/dist/library/other/manifests/1", headers={"Accept": OCI_MANIFEST})
        assert missing.status_code == 503 and missing.headers["Retry-After"].isdigit()
