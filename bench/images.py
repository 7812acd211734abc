"""OCI image layouts of random, incompressible layers, written as a stream.

The layers are valid gzip-compressed tars, written with deflate's "stored" mode:
random bytes do not compress anyway, and a 1 GiB layer is then written in
seconds, never held in memory. Every layer is fresh random data, so no two
images share a blob and a registry never finds a layer it already has.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
MTIME = 1704067200
PIECE = 1024 * 1024


class _Sink:
    """Writes to a temporary file in blobs/sha256 and names it by its digest."""

    def __init__(self, blobs: Path) -> None:
        self._blobs = blobs
        self._tmp = blobs / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
        self._file = self._tmp.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def close(self) -> str:
        self._file.close()
        hexdigest = self._hash.hexdigest()
        self._tmp.replace(self._blobs / hexdigest)
        return f"sha256:{hexdigest}"


def _write_bytes(blobs: Path, data: bytes) -> dict:
    sink = _Sink(blobs)
    sink.write(data)
    return {"digest": sink.close(), "size": sink.size}


def _write_layer(blobs: Path, size: int, name: str) -> tuple[dict, str]:
    """A gzip tar holding one file of ``size`` random bytes; returns (descriptor, diff_id)."""
    sink = _Sink(blobs)
    deflate = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    diff = hashlib.sha256()
    tar_size = 0

    def emit(data: bytes) -> None:
        nonlocal tar_size
        diff.update(data)
        tar_size += len(data)
        sink.write(deflate.compress(data))

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, MTIME
    emit(info.tobuf(format=tarfile.PAX_FORMAT))
    left = size
    while left:
        piece = os.urandom(min(PIECE, left))
        emit(piece)
        left -= len(piece)
    emit(b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE))
    emit(b"\0" * (-tar_size % tarfile.RECORDSIZE))
    sink.write(deflate.flush())
    return {"mediaType": OCI_LAYER_GZIP, "digest": sink.close(), "size": sink.size}, (
        f"sha256:{diff.hexdigest()}"
    )


@dataclass
class Layout:
    path: Path
    tags: list[str] = field(default_factory=list)
    bytes: int = 0  # sum of every blob's size

    def ref(self, tag: str) -> str:
        return f"oci:{self.path}:{tag}"


def build_layout(path: Path, images: dict[str, list[int]]) -> Layout:
    """One OCI layout holding one image per tag, each with layers of the sizes given."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layout = Layout(path)
    entries = []
    for tag, sizes in images.items():
        layers, diff_ids = [], []
        for i, size in enumerate(sizes):
            descriptor, diff_id = _write_layer(blobs, size, f"layer-{i}.bin")
            layers.append(descriptor)
            diff_ids.append(diff_id)
        config = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_descriptor = _write_bytes(blobs, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config_descriptor},
            "layers": layers,
        }
        manifest_descriptor = _write_bytes(blobs, json.dumps(manifest, indent=2).encode())
        entries.append({"mediaType": OCI_MANIFEST, **manifest_descriptor, "annotations": {REF_NAME: tag}})
        layout.tags.append(tag)
        layout.bytes += (
            sum(layer["size"] for layer in layers) + config_descriptor["size"] + manifest_descriptor["size"]
        )
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (path / "index.json").write_text(json.dumps(index))
    return layout


def check_gzip_tar(blob: Path) -> int:
    """Decompress and list a layer written here (used by the smoke test); returns the file size."""
    with tarfile.open(fileobj=io.BytesIO(blob.read_bytes()), mode="r:gz") as tar:
        return sum(m.size for m in tar.getmembers())
