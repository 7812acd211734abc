"""skopeo against the registry: byte-exact round trips of OCI images and indexes.

skopeo copies blobs and manifests as they are (``--preserve-digests`` makes it
fail rather than convert), so everything is compared by digest and by bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .clients import TRANSFER_TIMEOUT, Client, unique
from .images import (
    MiB,
    OCILayout,
    build_oci_index_layout,
    build_oci_layout,
    read_oci_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

# Several layers above S3's 5 MiB minimum part size, and a small one.
LAYER_SIZES = [6 * MiB, 12 * MiB, 10 * 1024]
SMALL = [32 * 1024]


def ref(registry, repo: str, tag_or_digest: str) -> str:
    sep = "@" if tag_or_digest.startswith("sha256:") else ":"
    return f"docker://{registry.host}/{repo}{sep}{tag_or_digest}"


def push(skopeo: Client, layout: OCILayout, dest: str, *flags: str) -> None:
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *flags,
        layout.ref,
        dest,
        timeout=TRANSFER_TIMEOUT,
    )


def pull(skopeo: Client, src: str, into: Path, tag: str, *flags: str) -> None:
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        *flags,
        src,
        f"oci:{into}:{tag}",
        timeout=TRANSFER_TIMEOUT,
    )


def inspect_raw(skopeo: Client, image: str, *flags: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", *flags, image).stdout.encode()


def assert_same_blobs(original: OCILayout, pulled: dict[str, bytes]) -> None:
    missing = sorted(set(original.blobs) - set(pulled))
    assert not missing, f"blobs not pulled back: {missing}"
    for digest, size in original.blobs.items():
        assert len(pulled[digest]) == size, f"{digest}: {len(pulled[digest])} bytes, not {size}"


def test_oci_image_round_trip(skopeo: Client, registry, tmp_path: Path) -> None:
    layout = build_oci_layout(tmp_path / "src", LAYER_SIZES, tag="1.0")
    repo = unique("team/sub/app")
    push(skopeo, layout, ref(registry, repo, "1.0"))

    raw = inspect_raw(skopeo, ref(registry, repo, "1.0"))
    assert sha256_digest(raw) == layout.digest, f"manifest changed on the way:\n{raw[:2000]!r}"
    assert raw == layout.raw
    assert inspect_raw(skopeo, ref(registry, repo, layout.digest)) == layout.raw

    config_digest = json.loads(layout.raw)["config"]["digest"]
    config = inspect_raw(skopeo, ref(registry, repo, "1.0"), "--config")
    assert sha256_digest(config) == config_digest

    info = json.loads(skopeo("inspect", "--tls-verify=false", ref(registry, repo, "1.0")).stdout)
    assert info["Digest"] == layout.digest
    assert info["Layers"] == [layer["digest"] for layer in json.loads(layout.raw)["layers"]]

    pull(skopeo, ref(registry, repo, "1.0"), tmp_path / "back", "1.0")
    descriptor, manifest, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert descriptor["digest"] == layout.digest
    assert manifest == layout.raw
    assert_same_blobs(layout, blobs)


def test_multi_platform_index_round_trip(skopeo: Client, registry, tmp_path: Path) -> None:
    layout = build_oci_index_layout(tmp_path / "src", tag="1.0")
    repo = unique("team/sub/multi")
    push(skopeo, layout, ref(registry, repo, "1.0"), "--all")

    raw = inspect_raw(skopeo, ref(registry, repo, "1.0"))
    assert sha256_digest(raw) == layout.digest, f"index changed on the way:\n{raw[:2000]!r}"
    assert raw == layout.raw
    for platform, digest in layout.platforms.items():
        manifest = inspect_raw(skopeo, ref(registry, repo, digest))
        assert sha256_digest(manifest) == digest, platform
        # Resolving the tag for one platform goes through the index to that manifest.
        os_name, arch = platform.split("/")
        info = json.loads(
            skopeo(
                "--override-os",
                os_name,
                "--override-arch",
                arch,
                "inspect",
                "--tls-verify=false",
                ref(registry, repo, "1.0"),
            ).stdout
        )
        # "Digest" is the tag's (the index's); "Layers" are the chosen platform's.
        assert info["Digest"] == layout.digest
        assert info["Architecture"] == arch
        assert info["Layers"] == [layer["digest"] for layer in json.loads(manifest)["layers"]]

    pull(skopeo, ref(registry, repo, "1.0"), tmp_path / "back", "1.0", "--all")
    descriptor, index, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert descriptor["digest"] == layout.digest
    assert index == layout.raw
    assert_same_blobs(layout, blobs)  # both platforms' manifests, configs and layers


def test_copy_between_repositories(skopeo: Client, registry, tmp_path: Path) -> None:
    """Registry to registry: skopeo tries a cross-repository mount for every blob."""
    layout = build_oci_layout(tmp_path / "src", [6 * MiB, 4 * 1024], tag="1.0")
    first, second = unique("team/sub/origin"), unique("other/team/copy")
    push(skopeo, layout, ref(registry, first, "1.0"))
    skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        ref(registry, first, "1.0"),
        ref(registry, second, "2.0"),
        timeout=TRANSFER_TIMEOUT,
    )
    assert inspect_raw(skopeo, ref(registry, second, "2.0")) == layout.raw
    pull(skopeo, ref(registry, second, "2.0"), tmp_path / "back", "2.0")
    _, manifest, blobs = read_oci_layout(tmp_path / "back", "2.0")
    assert manifest == layout.raw
    assert_same_blobs(layout, blobs)


def test_list_tags(skopeo: Client, registry, tmp_path: Path) -> None:
    repo = unique("team/sub/tags")
    tags = ["1.0", "1.1", "latest"]
    for i, tag in enumerate(tags):
        layout = build_oci_layout(tmp_path / f"src{i}", SMALL, tag=tag)
        push(skopeo, layout, ref(registry, repo, tag))
    listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}").stdout)
    assert listed["Repository"] == f"{registry.host}/{repo}"
    assert sorted(listed["Tags"]) == sorted(tags)


def test_delete_manifest(skopeo: Client, registry, tmp_path: Path) -> None:
    layout = build_oci_layout(tmp_path / "src", SMALL, tag="1.0")
    repo = unique("team/sub/deleted")
    push(skopeo, layout, ref(registry, repo, "1.0"))
    assert inspect_raw(skopeo, ref(registry, repo, "1.0")) == layout.raw

    # skopeo resolves the tag to its digest, then DELETEs the manifest by digest.
    skopeo("delete", "--tls-verify=false", ref(registry, repo, "1.0"))

    for gone in (ref(registry, repo, layout.digest), ref(registry, repo, "1.0")):
        failed = skopeo.fails("inspect", "--raw", "--tls-verify=false", gone)
        assert "manifest unknown" in failed.stderr.lower() or "not found" in failed.stderr.lower(), (
            f"inspect {gone} after delete failed for another reason:\n{failed.stderr}"
        )
