"""`skyport push` / `skyport pull` against the running registry, with real clients on the
other side: what skyport push pushed, skopeo, podman and docker pull (digests and image
IDs compared); what skyport pull wrote, skopeo reads; and the docker-daemon source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .clients import TRANSFER_TIMEOUT, Client, base_env, unique
from .images import MiB, build_docker_archive, build_oci_index_layout, build_oci_layout, read_oci_layout

pytestmark = pytest.mark.e2e


def skyport(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = base_env(SKYPORT_PUSH_STATE=str(tmp / "push-state.json"), DOCKER_CONFIG=str(tmp), **env)
    result = subprocess.run(
        [sys.executable, "-m", "skyport_cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=TRANSFER_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"skyport {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


def test_skopeo_reads_what_skyport_push_pushed_and_skyport_pull_wrote(
    registry, skopeo: Client, tmp_path
) -> None:
    layout = build_oci_layout(tmp_path / "src", [20 * MiB, 64 * 1024], tag="1.0")
    repo = unique("direct/skopeo")
    pushed = skyport("push", layout.ref, f"{registry.host}/{repo}:1.0", tmp=tmp_path)
    assert pushed.stdout.strip() == layout.digest
    copied = tmp_path / "copied"
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{registry.host}/{repo}:1.0",
        f"oci:{copied}:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    _, raw, blobs = read_oci_layout(copied, "1.0")
    assert raw == layout.raw and set(blobs) == set(layout.blobs)

    pulled = tmp_path / "pulled"
    skyport("pull", f"{registry.host}/{repo}:1.0", f"oci:{pulled}", tmp=tmp_path)
    again = tmp_path / "again"
    skopeo("copy", "--preserve-digests", f"oci:{pulled}:1.0", f"oci:{again}:1.0", timeout=TRANSFER_TIMEOUT)
    _, raw, blobs = read_oci_layout(again, "1.0")
    assert raw == layout.raw and set(blobs) == set(layout.blobs)


def test_skopeo_reads_a_multi_platform_index_skyport_pushed(registry, skopeo: Client, tmp_path) -> None:
    layout = build_oci_index_layout(tmp_path / "src")
    repo = unique("direct/index")
    skyport("push", layout.ref, f"{registry.host}/{repo}:1.0", tmp=tmp_path)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:1.0").stdout
    assert raw.encode() == layout.raw
    for platform, digest in layout.platforms.items():
        config = json.loads(
            skopeo(
                "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}@{digest}"
            ).stdout
        )["config"]["digest"]
        assert config == layout.platform_configs[platform]


def test_podman_pulls_what_skyport_push_pushed(registry, podman: Client, tmp_path) -> None:
    archive = build_docker_archive(tmp_path / "image.tar", [8 * MiB], "direct/podman:1.0")
    repo = unique("direct/podman")
    skyport("push", f"docker-archive:{archive.path}", f"{registry.host}/{repo}:1.0", tmp=tmp_path)
    image = f"{registry.host}/{repo}:1.0"
    podman("pull", "--tls-verify=false", image, timeout=TRANSFER_TIMEOUT)
    pulled = podman("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    assert f"sha256:{pulled}" == archive.image_id


def test_docker_daemon_source_and_docker_pull(registry, dockerd, tmp_path) -> None:
    docker = dockerd.client
    archive = build_docker_archive(tmp_path / "image.tar", [6 * MiB, 1024], f"{unique('direct/saved')}:1.0")
    docker("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)
    repo = unique("direct/daemon")
    skyport(
        "push",
        f"docker-daemon:{archive.repo_tag}",
        f"{registry.host}/{repo}:1.0",
        tmp=tmp_path,
        DOCKER_HOST=dockerd.host,
    )
    docker("rmi", archive.repo_tag)
    image = f"{registry.host}/{repo}:1.0"
    docker("pull", image, timeout=TRANSFER_TIMEOUT)
    assert json.loads(docker("image", "inspect", image).stdout)[0]["Id"] == archive.image_id
    docker("rmi", image)
