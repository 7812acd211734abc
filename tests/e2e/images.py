"""Test images built from scratch, so no outside registry is ever needed.

Three builders, all pure Python:

* :func:`build_oci_layout` -- an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``) holding one image whose layers are gzip-compressed tars
  of random, incompressible bytes, so each layer's size is close to the size asked.
* :func:`build_oci_index_layout` -- an OCI image layout holding a multi-platform
  image index (one small image per platform).
* :func:`build_docker_archive` -- a ``docker save``-format tarball
  (``manifest.json``, the config, one ``layer.tar`` per layer) for ``docker load``
  and ``podman load``.

Every layer is fresh random data, so two images never share a blob and each test
stays independent of the others, even against a long-lived registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024

OCI_LAYOUT_VERSION = "1.0.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200  # CREATED as a Unix time: tar headers do not depend on the clock


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_arch() -> str:
    """The host's architecture in OCI terms (docker pulls this one by default)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


@dataclass(frozen=True)
class Layer:
    tar: bytes  # the uncompressed tar: its digest is the diff_id
    gz: bytes  # the gzip-compressed tar: its digest is the blob digest

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)

    @property
    def digest(self) -> str:
        return sha256_digest(self.gz)


@dataclass
class OCILayout:
    """An OCI image layout on disk and what a round trip must preserve."""

    path: Path
    tag: str
    digest: str  # digest of the top-level manifest or index
    media_type: str
    raw: bytes  # the top-level manifest or index, byte for byte
    blobs: dict[str, int] = field(default_factory=dict)  # every blob digest -> size
    # For an index: "os/arch" -> that platform's manifest digest and config digest.
    platforms: dict[str, str] = field(default_factory=dict)
    platform_configs: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The skopeo reference of this image: ``oci:DIR:TAG``."""
        return f"oci:{self.path}:{self.tag}"


@dataclass
class DockerArchive:
    path: Path
    repo_tag: str
    image_id: str  # sha256 of the config: what docker and podman call the image ID
    config: dict
    layer_diff_ids: list[str]


def make_layer(size: int, index: int = 0, payload: bytes | None = None) -> Layer:
    """A tar holding one file of ``size`` random bytes, and its gzip form.

    ``payload``: random bytes made once and reused (its first ``size`` bytes), so that a
    big layer costs its randomness once per session; the file name in the tar differs
    by ``index``, so layers built from one payload are distinct blobs.

    Random data does not compress, so the gzip blob is ``size`` plus a few hundred
    bytes of headers: a 6 MiB request really exercises a layer above S3's 5 MiB part
    size. Compression level 1 keeps building fast.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo("data")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        directory.mtime = MTIME
        tar.addfile(directory)
        info = tarfile.TarInfo(f"data/layer-{index}.bin")
        info.size = size
        info.mode = 0o644
        info.mtime = MTIME
        data = os.urandom(size) if payload is None else memoryview(payload)[:size]
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return Layer(tar=raw, gz=gzip.compress(raw, compresslevel=1, mtime=0))


def image_config(arch: str, os_name: str, layers: list[Layer]) -> dict:
    """An image config valid for both OCI and docker (same JSON schema)."""
    return {
        "created": CREATED,
        "architecture": arch,
        "os": os_name,
        "config": {"Env": ["PATH=/data"], "Cmd": ["/data/layer-0.bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": CREATED, "created_by": f"skyport e2e: layer {i} ({len(layer.tar)} B)"}
            for i, layer in enumerate(layers)
        ],
    }


def canonical_json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(layout: Path, data: bytes, blobs: dict[str, int]) -> dict:
    digest = sha256_digest(data)
    target = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(data)
    blobs[digest] = len(data)
    return {"digest": digest, "size": len(data)}


def _write_image(
    layout: Path,
    layer_sizes: list[int],
    arch: str,
    os_name: str,
    blobs: dict[str, int],
    payload: bytes | None = None,
    first_index: int = 0,
) -> tuple[bytes, dict]:
    """Write one image's layers, config and manifest as blobs; return the manifest."""
    layers = [make_layer(size, first_index + i, payload) for i, size in enumerate(layer_sizes)]
    config = canonical_json(image_config(arch, os_name, layers))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_write_blob(layout, config, blobs)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, **_write_blob(layout, layer.gz, blobs)} for layer in layers],
    }
    raw = json.dumps(manifest, indent=2).encode()  # not canonical on purpose: bytes must survive
    return raw, {"mediaType": OCI_MANIFEST, **_write_blob(layout, raw, blobs)}


def _write_layout(layout: Path, top: dict, tag: str) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**top, "annotations": {REF_NAME: tag}}],
    }
    (layout / "index.json").write_text(json.dumps(index))


def build_oci_layout(
    path: Path,
    layer_sizes: list[int],
    tag: str = "1.0",
    arch: str | None = None,
    os_name: str = "linux",
    payload: bytes | None = None,
    first_index: int = 0,
) -> OCILayout:
    """An OCI image layout with one image of ``len(layer_sizes)`` random gzip layers
    (``payload``, ``first_index``: see make_layer)."""
    path.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, int] = {}
    raw, descriptor = _write_image(
        path, layer_sizes, arch or host_arch(), os_name, blobs, payload, first_index
    )
    _write_layout(path, descriptor, tag)
    return OCILayout(path, tag, descriptor["digest"], OCI_MANIFEST, raw, blobs)


def build_oci_index_layout(
    path: Path,
    platforms: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64")),
    layer_sizes: tuple[int, ...] = (64 * 1024, 8 * 1024),
    tag: str = "1.0",
) -> OCILayout:
    """An OCI image layout whose tag names a multi-platform image index."""
    path.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, int] = {}
    entries, per_platform, configs = [], {}, {}
    for os_name, arch in platforms:
        raw, descriptor = _write_image(path, list(layer_sizes), arch, os_name, blobs)
        entries.append({**descriptor, "platform": {"architecture": arch, "os": os_name}})
        per_platform[f"{os_name}/{arch}"] = descriptor["digest"]
        configs[f"{os_name}/{arch}"] = json.loads(raw)["config"]["digest"]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    raw_index = json.dumps(index, indent=2).encode()
    descriptor = {"mediaType": OCI_INDEX, **_write_blob(path, raw_index, blobs)}
    _write_layout(path, descriptor, tag)
    return OCILayout(path, tag, descriptor["digest"], OCI_INDEX, raw_index, blobs, per_platform, configs)


def read_oci_layout(path: Path, tag: str) -> tuple[dict, bytes, dict[str, bytes]]:
    """Read back a layout written by skopeo: (descriptor of ``tag``, its bytes, every blob).

    Each blob's content is checked against its file name on the way.
    """
    index = json.loads((path / "index.json").read_text())
    matches = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    assert len(matches) == 1, f"{path}/index.json has no single entry for tag {tag!r}: {index}"
    blobs: dict[str, bytes] = {}
    for blob in (path / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        digest = f"sha256:{blob.name}"
        assert sha256_digest(data) == digest, f"{blob} does not hash to its name"
        blobs[digest] = data
    descriptor = matches[0]
    return descriptor, blobs[descriptor["digest"]], blobs


def build_docker_archive(
    path: Path,
    layer_sizes: list[int],
    repo_tag: str,
    arch: str | None = None,
    os_name: str = "linux",
    payload: bytes | None = None,
    first_index: int = 0,
) -> DockerArchive:
    """A ``docker save``-format tarball: ``manifest.json``, the config, ``<id>/layer.tar``
    (``payload``, ``first_index``: see make_layer)."""
    layers = [make_layer(size, first_index + i, payload) for i, size in enumerate(layer_sizes)]
    config = image_config(arch or host_arch(), os_name, layers)
    config_raw = canonical_json(config)
    config_name = hashlib.sha256(config_raw).hexdigest() + ".json"
    layer_names = [f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = MTIME
        tar.addfile(info, io.BytesIO(data))

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, config_name, config_raw)
        for name, layer in zip(layer_names, layers, strict=True):
            directory = tarfile.TarInfo(name.split("/", 1)[0])
            directory.type = tarfile.DIRTYPE
            directory.mode = 0o755
            directory.mtime = MTIME
            tar.addfile(directory)
            add(tar, name, layer.tar)
        add(tar, "manifest.json", json.dumps(manifest).encode())
    return DockerArchive(
        path, repo_tag, sha256_digest(config_raw), config, [layer.diff_id for layer in layers]
    )
