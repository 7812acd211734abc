"""A real client on both ends: skopeo pushes a multi-platform image to the source (served
over HTTP), the source's events replicate it, and skopeo reads the same digests back
from the destination, of both kinds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from direct.running import serve
from e2e.images import build_oci_index_layout
from machine import cannot_run
from oci import sha256
from skyport.registry import Registry

from .conftest import replicate_all, skyport_url


def skopeo(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


@pytest.mark.parametrize("kind", ["oci", "skyport"])
def test_skopeo_pushes_to_the_source_and_reads_the_same_digests_from_the_destination(
    kind, tmp_path: Path, registry: Registry, destination: Registry, rules, replicator, feed
):
    if shutil.which("skopeo") is None:
        cannot_run("skopeo is not installed: scripts/install-system-deps.sh")
    layout = build_oci_index_layout(tmp_path / "image")
    with serve(registry) as source, serve(destination) as served_destination:
        rules.add("team/*", served_destination.url if kind == "oci" else skyport_url(destination))
        skopeo(
            "copy", "--all", "--dest-tls-verify=false", layout.ref, f"docker://{source.address}/team/app:1.0"
        )
        replicate_all(replicator, feed.new())
        raw = skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{served_destination.address}/team/app:1.0"
        )
        assert raw.stdout == layout.raw
        for platform, digest in layout.platforms.items():
            child = skopeo(
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{served_destination.address}/team/app@{digest}",
            )
            assert sha256(child.stdout) == digest, platform
        tags = skopeo("list-tags", "--tls-verify=false", f"docker://{served_destination.address}/team/app")
        assert b'"1.0"' in tags.stdout
