"""docker and podman against the registry: push, forget, pull, same image.

Both clients recompress layers on push, so manifest digests are theirs to choose;
what must survive the round trip is the image ID (the config's digest) and the
layers' diff_ids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .clients import TRANSFER_TIMEOUT, Client, unique
from .images import MiB, build_docker_archive, build_oci_index_layout, host_arch

pytestmark = pytest.mark.e2e

LAYER_SIZES = [6 * MiB, 12 * MiB, 10 * 1024]
PUSHED = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def docker_inspect(docker: Client, image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


def assert_gone(docker: Client, image_id: str) -> None:
    """Make sure the pull that follows really downloads everything again."""
    docker.fails("image", "inspect", image_id)


def fetch_manifest(registry, repo: str, reference: str) -> tuple[str, dict]:
    with registry.http() as http:
        response = http.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES})
    assert response.status_code == 200, f"GET manifest {repo}:{reference}: {response.status_code}"
    return response.headers["Docker-Content-Digest"], response.json()


def test_docker_push_pull_round_trip(dockerd, registry, tmp_path: Path) -> None:
    docker = dockerd.client
    repo = unique("e2e/docker-app")
    archive = build_docker_archive(tmp_path / "image.tar", LAYER_SIZES, f"local/{repo}:src")
    docker("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)
    assert docker_inspect(docker, archive.repo_tag)["Id"] == archive.image_id

    target = f"{registry.host}/{repo}:1"
    docker("tag", archive.repo_tag, target)
    pushed = PUSHED.search(docker("push", target, timeout=TRANSFER_TIMEOUT).stdout)
    assert pushed, "docker push printed no digest"
    digest = pushed.group(1)

    served_digest, manifest = fetch_manifest(registry, repo, "1")
    assert served_digest == digest
    assert manifest["config"]["digest"] == archive.image_id
    assert len(manifest["layers"]) == len(LAYER_SIZES)

    docker("rmi", target, archive.repo_tag)
    assert_gone(docker, archive.image_id)

    docker("pull", target, timeout=TRANSFER_TIMEOUT)
    pulled = docker_inspect(docker, target)
    assert pulled["Id"] == archive.image_id
    assert pulled["RootFS"]["Layers"] == archive.layer_diff_ids
    assert f"{registry.host}/{repo}@{digest}" in pulled["RepoDigests"]

    # By digest too, after forgetting the image again.
    docker("rmi", target)
    assert_gone(docker, archive.image_id)
    docker("pull", f"{registry.host}/{repo}@{digest}", timeout=TRANSFER_TIMEOUT)
    assert docker_inspect(docker, f"{registry.host}/{repo}@{digest}")["Id"] == archive.image_id


def test_docker_manifest_list(dockerd, registry, tmp_path: Path) -> None:
    """`docker manifest create/push` writes a manifest list; pull picks a platform from it."""
    docker = dockerd.client
    repo = unique("e2e/docker-multi")
    ids = {}
    for arch in ("amd64", "arm64"):
        archive = build_docker_archive(
            tmp_path / f"{arch}.tar", [64 * 1024], f"local/{repo}:{arch}", arch=arch
        )
        docker("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)
        docker("tag", archive.repo_tag, f"{registry.host}/{repo}:{arch}")
        docker("push", f"{registry.host}/{repo}:{arch}", timeout=TRANSFER_TIMEOUT)
        docker("rmi", archive.repo_tag, f"{registry.host}/{repo}:{arch}")
        assert_gone(docker, archive.image_id)
        ids[arch] = archive.image_id

    listed = f"{registry.host}/{repo}:1"
    docker(
        "manifest",
        "create",
        "--insecure",
        listed,
        f"{registry.host}/{repo}:amd64",
        f"{registry.host}/{repo}:arm64",
    )
    docker("manifest", "push", "--insecure", "--purge", listed, timeout=TRANSFER_TIMEOUT)
    _, index = fetch_manifest(registry, repo, "1")
    platforms = {m["platform"]["architecture"] for m in index["manifests"]}
    assert platforms == {"amd64", "arm64"}, index

    for arch in ("arm64", "amd64"):
        docker("pull", "--platform", f"linux/{arch}", listed, timeout=TRANSFER_TIMEOUT)
        pulled = docker_inspect(docker, listed)
        assert (pulled["Id"], pulled["Architecture"]) == (ids[arch], arch)
        docker("rmi", listed)


def test_docker_pulls_oci_index_by_platform(dockerd, skopeo, registry, tmp_path: Path) -> None:
    """docker pulls each platform of an OCI image index that skopeo pushed."""
    docker = dockerd.client
    layout = build_oci_index_layout(tmp_path / "src", tag="1.0")
    repo = unique("e2e/docker-oci-index")
    image = f"{registry.host}/{repo}:1.0"
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{image}",
        timeout=TRANSFER_TIMEOUT,
    )
    for platform in (f"linux/{host_arch()}", "linux/arm64", "linux/amd64"):
        docker("pull", "--platform", platform, image, timeout=TRANSFER_TIMEOUT)
        pulled = docker_inspect(docker, image)
        assert pulled["Id"] == layout.platform_configs[platform], platform
        assert f"{registry.host}/{repo}@{layout.digest}" in pulled["RepoDigests"]
        docker("rmi", image)


def podman_id(podman: Client, image: str) -> str:
    raw = podman("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    return raw if raw.startswith("sha256:") else f"sha256:{raw}"


def test_podman_push_pull_round_trip(podman, registry, tmp_path: Path) -> None:
    repo = unique("e2e/podman-app")
    archive = build_docker_archive(tmp_path / "image.tar", LAYER_SIZES, f"local/{repo}:src")
    podman("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)
    local = archive.image_id.removeprefix("sha256:")
    assert podman_id(podman, local) == archive.image_id

    target = f"{registry.host}/{repo}:1"
    podman("tag", local, target)
    podman("push", "--tls-verify=false", target, timeout=TRANSFER_TIMEOUT)
    _, manifest = fetch_manifest(registry, repo, "1")
    assert manifest["config"]["digest"] == archive.image_id

    podman("rmi", "--force", local)
    podman.fails("image", "inspect", local)

    podman("pull", "--tls-verify=false", target, timeout=TRANSFER_TIMEOUT)
    assert podman_id(podman, target) == archive.image_id
    layers = json.loads(podman("image", "inspect", target).stdout)[0]["RootFS"]["Layers"]
    assert layers == archive.layer_diff_ids
