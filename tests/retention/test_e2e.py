"""End to end: `skyport serve` (as `make run` starts it), skopeo pushing several tags and
pulling one, `skyport retention` finding the registry through its state file: a rule
keeping what was pulled within a day deletes the others and keeps the pulled one, which
skopeo still pulls byte for byte."""

from __future__ import annotations

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
from e2e.images import build_oci_layout, read_oci_layout
from machine import cannot_run

pytestmark = pytest.mark.e2e


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
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(
            f"runs its own registry (its rules are set by `skyport`), not the one {REGISTRY_ENV} names"
        )
    base = tmp_path_factory.mktemp("retention-registry")
    port = _free_port()
    log = base / "skyport.log"
    proc, argv, env = spawn_server(request, port, log, SKYPORT_STATE_DIR=str(base / "state"))
    served = Served(host=f"127.0.0.1:{port}", proc=proc, log=log)
    try:
        why = _wait_ready(served, time.monotonic() + READY_TIMEOUT)
        if why:
            pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
        yield Server(served, env)
    finally:
        _stop(proc, "the registry")


def copy(skopeo: Client, source: str, destination: str) -> None:
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--retry-times=0",
        source,
        destination,
        timeout=TRANSFER_TIMEOUT,
    )


def test_retention_keeps_what_skopeo_pulled(skopeo: Client, server: Server, tmp_path: Path):
    name = unique("ret/app")
    repo = f"docker://{server.served.host}/{name}"
    images = {tag: build_oci_layout(tmp_path / tag, [16 * 1024 + i], tag=tag) for i, tag in enumerate("abcd")}
    for tag, image in images.items():
        copy(skopeo, image.ref, f"{repo}:{tag}")
    copy(skopeo, f"{repo}:b", f"oci:{tmp_path / 'pulled'}:b")  # the one pull (GET of b's manifest)

    added = server.skyport("retention", "add", name, "--keep-pulled-within", "1d")
    assert added.returncode == 0, added.stderr
    # As of two hours from now: past the grace that protects pushes in flight.
    preview = server.skyport("retention", "preview", "--as-of", "+2h")
    assert preview.returncode == 0, preview.stderr
    for tag, image in images.items():
        verb = "keep  " if tag == "b" else "delete"
        assert f"  {verb} {image.digest} [{tag}]" in preview.stdout, preview.stdout
    run = server.skyport("retention", "run", "--as-of", "+2h")
    assert run.returncode == 0, run.stderr
    # The scan on push (issue 14) may have given each image an SBOM and a report (untagged
    # referrers) by now: those of the kept image are kept with it, the others go too.
    lines = run.stdout.splitlines()
    untagged = [(i, line.split()[0]) for i, line in enumerate(lines) if " [untagged] " in line]
    for i, verdict in untagged:
        if verdict == "keep":
            assert f"referrer of kept manifest {images['b'].digest}" in lines[i + 1], run.stdout
    deleted_untagged = sum(1 for _, verdict in untagged if verdict == "delete")
    assert run.stdout.count("-> deleted") == 3 + deleted_untagged, run.stdout

    listed = skopeo("list-tags", "--tls-verify=false", repo).stdout
    assert '"b"' in listed and not any(f'"{tag}"' in listed for tag in "acd"), listed
    gone = skopeo("inspect", "--raw", "--tls-verify=false", f"{repo}:a", check=False)
    assert gone.returncode != 0
    # The kept image still pulls, byte for byte.
    copy(skopeo, f"{repo}:b", f"oci:{tmp_path / 'again'}:b")
    descriptor, manifest, blobs = read_oci_layout(tmp_path / "again", "b")
    assert descriptor["digest"] == images["b"].digest and manifest == images["b"].raw
    assert {digest: len(data) for digest, data in blobs.items()} == images["b"].blobs
