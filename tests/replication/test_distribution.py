"""Replication to Distribution (Debian's `docker-registry`, as `make bench` runs it), on
its filesystem driver, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from direct.running import free_port
from machine import cannot_run
from oci import make_image, make_index, push_image, put_manifest, sha256
from skyport.distribution_client import RegistryClient
from skyport.events import TAG_CREATED, TAG_DELETED, TAG_MOVED
from skyport.replication import ReplicationFailed
from skyport.replication.destinations import ACCEPT

from .conftest import replicate_all

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: skyport-test
"""


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[str]:
    if shutil.which("docker-registry") is None:
        cannot_run(
            "docker-registry (Debian package docker-registry) is not installed: "
            "scripts/install-system-deps.sh"
        )
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(root=tmp_path / "storage", port=port))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(retries=False, timeout=2)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if http.request("GET", f"{url}/v2/").status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                cannot_run(
                    f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def digest_at(url: str, repository: str, reference: str) -> str | None:
    client = RegistryClient(url.removeprefix("http://"), repository, scheme="http")
    return client.manifest_digest(reference, ACCEPT)


def test_images_indexes_tag_moves_and_deletes_reach_distribution(
    rules, replicator, feed, source_client, distribution
):
    rules.add("team/*", f"{distribution}/mirror", deletes=True)
    children = [make_image((600,)), make_image((700,))]
    for child in children:
        push_image(source_client, "team/app", child)
    index, media_type = make_index(children)
    assert put_manifest(source_client, "team/app", "multi", index, media_type).status_code == 201
    single = make_image((3 * 1024 * 1024,))
    push_image(source_client, "team/app", single, "single")
    replicate_all(replicator, [e for e in feed.new() if e.type == TAG_CREATED])

    assert digest_at(distribution, "mirror/team/app", "multi") == sha256(index)
    assert digest_at(distribution, "mirror/team/app", "single") == single.digest
    for child in children:
        assert digest_at(distribution, "mirror/team/app", child.digest) == child.digest

    moved = make_image()
    push_image(source_client, "team/app", moved, "single")
    replicate_all(replicator, [e for e in feed.new() if e.type == TAG_MOVED])
    assert digest_at(distribution, "mirror/team/app", "single") == moved.digest

    assert source_client.delete(f"/v2/team/app/manifests/{moved.digest}").status_code == 202
    replicate_all(replicator, feed.new())
    assert digest_at(distribution, "mirror/team/app", moved.digest) is None
    assert digest_at(distribution, "mirror/team/app", "single") is None
    assert any(e.type == TAG_DELETED for e in feed.all())


def test_a_tag_distribution_cannot_delete_alone_fails_with_the_reason(
    rules, replicator, feed, source_client, distribution
):
    rules.add("team/*", distribution, deletes=True)
    image = make_image()
    push_image(source_client, "team/app", image, "keep")
    push_image(source_client, "team/app", image, "extra")
    replicate_all(replicator, feed.new())
    assert digest_at(distribution, "team/app", "extra") == image.digest

    assert source_client.delete("/v2/team/app/manifests/extra").status_code == 202
    with pytest.raises(ReplicationFailed) as failed:
        replicate_all(replicator, feed.new())
    assert "the tag extra cannot be deleted alone there" in failed.value.reason
    # Nothing else went: the manifest and its other tag are still there.
    assert digest_at(distribution, "team/app", "keep") == image.digest
