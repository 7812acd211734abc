"""End to end: `skyport serve` (as `make run` starts it), `skyport immutability` finding it
through its state file, and skopeo: another image pushed to an immutable tag is refused
with DENIED naming the rule, the first image still pulls byte for byte, an excluded tag
moves, deleting the image is refused, and once the rule is removed the tag moves. Then
docker: its push of another image to an immutable tag fails, the first image pulls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.clients import TRANSFER_TIMEOUT, Client, unique
from e2e.conftest import READY_TIMEOUT, REGISTRY_ENV, _free_port, _log_tail, _stop, _wait_ready, spawn_server
from e2e.conftest import Registry as Served
from e2e.images import build_docker_archive, build_oci_layout, read_oci_layout
from machine import cannot_run

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 1  # the served registry's SKYPORT_IMMUTABILITY_CACHE_SECONDS


@dataclass
class Server:
    served: Served
    env: dict[str, str]

    def skyport(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "skyport_cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(
            f"runs its own registry (its rules are set by `skyport`), not the one {REGISTRY_ENV} names"
        )
    base = tmp_path_factory.mktemp("immutability-registry")
    port = _free_port()
    log = base / "skyport.log"
    proc, argv, env = spawn_server(
        request,
        port,
        log,
        SKYPORT_STATE_DIR=str(base / "state"),
        SKYPORT_IMMUTABILITY_CACHE_SECONDS=str(CACHE_SECONDS),
    )
    served = Served(host=f"127.0.0.1:{port}", proc=proc, log=log)
    try:
        why = _wait_ready(served, time.monotonic() + READY_TIMEOUT)
        if why:
            pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
        yield Server(served, env)
    finally:
        _stop(proc, "the registry")


def copy(
    skopeo: Client, source: str, destination: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--retry-times=0",
        source,
        destination,
        timeout=TRANSFER_TIMEOUT,
        check=check,
    )


def test_skopeo_cannot_move_an_immutable_tag(skopeo: Client, server: Server, tmp_path: Path):
    added = server.skyport("immutability", "add", "team/*", "--exclude", "latest")
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.split()[2]
    listed = server.skyport("immutability", "list")
    assert listed.stdout == f"{rule_id}\tteam/*\texcept: latest\n", listed.stderr

    first = build_oci_layout(tmp_path / "first", [64 * 1024, 1024], tag="1.0")
    second = build_oci_layout(tmp_path / "second", [32 * 1024], tag="1.0")
    repo = f"docker://{server.served.host}/{unique('team/app')}"
    copy(skopeo, first.ref, f"{repo}:1.0")
    copy(skopeo, first.ref, f"{repo}:1.0")  # the same image again: accepted
    copy(skopeo, first.ref, f"{repo}:latest")

    refused = copy(skopeo, second.ref, f"{repo}:1.0", check=False)
    assert refused.returncode != 0, refused.stdout
    assert "denied" in refused.stderr.lower() and rule_id in refused.stderr, refused.stderr

    # The first image still pulls, byte for byte.
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{repo}:1.0").stdout.encode()
    assert raw == first.raw
    copy(skopeo, f"{repo}:1.0", f"oci:{tmp_path / 'back'}:1.0")
    descriptor, manifest, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert descriptor["digest"] == first.digest and manifest == first.raw
    assert {digest: len(data) for digest, data in blobs.items()} == first.blobs

    # An excluded tag moves; the image an immutable tag names is not deleted.
    copy(skopeo, second.ref, f"{repo}:latest")
    deleted = skopeo("delete", "--tls-verify=false", f"{repo}@{first.digest}", check=False)
    assert deleted.returncode != 0 and "denied" in deleted.stderr.lower(), deleted.stderr
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"{repo}:1.0").stdout.encode() == first.raw

    # The rule removed (and the server's cache expired), the tag moves.
    removed = server.skyport("immutability", "remove", rule_id)
    assert removed.returncode == 0, removed.stderr
    time.sleep(CACHE_SECONDS + 0.5)
    copy(skopeo, second.ref, f"{repo}:1.0")
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"{repo}:1.0").stdout.encode() == second.raw


def test_docker_cannot_move_an_immutable_tag(dockerd, server: Server, tmp_path: Path):
    docker = dockerd.client
    added = server.skyport("immutability", "add", "docker/*")
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.split()[2]
    repo = unique("docker/app")
    target = f"{server.served.host}/{repo}:1"
    first = build_docker_archive(tmp_path / "first.tar", [32 * 1024], f"local/{repo}:first")
    second = build_docker_archive(tmp_path / "second.tar", [16 * 1024], f"local/{repo}:second")
    for archive in (first, second):
        docker("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)

    docker("tag", first.repo_tag, target)
    docker("push", target, timeout=TRANSFER_TIMEOUT)
    docker("tag", second.repo_tag, target)
    refused = docker.fails("push", target, timeout=TRANSFER_TIMEOUT)
    assert (
        "denied" in (refused.stderr + refused.stdout).lower() and rule_id in refused.stderr + refused.stdout
    )

    # The first image still pulls (docker recompresses layers: compare image IDs).
    docker("rmi", "--force", first.image_id, second.image_id)  # every tag and digest reference
    docker.fails("image", "inspect", first.image_id)
    docker("pull", target, timeout=TRANSFER_TIMEOUT)
    assert json.loads(docker("image", "inspect", target).stdout)[0]["Id"] == first.image_id
