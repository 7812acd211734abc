"""What `skyport push` reads: an image as blobs (read by range from a file, for
parallel parts) and manifests (small, in memory), whatever the source.

- ``oci:DIR[:TAG]``: an OCI image layout (image-spec "image-layout"); TAG picks the
  manifest whose ``org.opencontainers.image.ref.name`` is TAG; without it the layout's
  only manifest. An index (multi-platform) is pushed whole: children first.
- ``docker-archive:FILE.tar``: ``docker save`` output. Its ``manifest.json`` names the
  config and layer files; the layers are tar files inside the tar, read in place (their
  offsets), hashed once here, and described by a new OCI image manifest (layer media
  type ``...layer.v1.tar``, or ``+gzip`` when a layer is gzip-compressed).
- ``docker-daemon:IMAGE[:TAG]``: ``docker save`` (DOCKER_HOST as docker reads it) to a
  temporary file, then as docker-archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
HASH_CHUNK = 4 * 1024 * 1024


class SourceError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A blob's bytes: ``size`` bytes at ``offset`` of ``path``."""

    digest: str
    size: int
    path: str
    offset: int = 0

    def read(self, start: int, length: int) -> bytes:
        with open(self.path, "rb") as file:
            return os.pread(file.fileno(), length, self.offset + start)


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


@dataclass(slots=True)
class Image:
    """Blobs to upload, manifests in push order (children before the index), the root last."""

    blobs: dict[str, BlobFile] = field(default_factory=dict)
    manifests: list[Manifest] = field(default_factory=list)
    tag: str | None = None

    @property
    def root(self) -> Manifest:
        return self.manifests[-1]


def _sha256_of(path: str, offset: int = 0, size: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(offset)
        left = size if size is not None else os.fstat(file.fileno()).st_size - offset
        while left > 0:
            chunk = file.read(min(HASH_CHUNK, left))
            if not chunk:
                raise SourceError(f"{path}: shorter than expected")
            digest.update(chunk)
            left -= len(chunk)
    return f"sha256:{digest.hexdigest()}"


@contextlib.contextmanager
def open_source(source: str) -> Iterator[Image]:
    kind, _, rest = source.partition(":")
    if kind == "oci":
        directory, _, tag = rest.partition(":")
        yield read_oci_layout(Path(directory), tag or None)
    elif kind == "docker-archive":
        yield read_docker_archive(rest)
    elif kind == "docker-daemon":
        with tempfile.TemporaryDirectory(prefix="skyport-push-") as folder:
            archive = os.path.join(folder, "image.tar")
            result = subprocess.run(["docker", "save", "-o", archive, rest], capture_output=True, text=True)
            if result.returncode != 0:
                raise SourceError(f"docker save {rest}: {result.stderr.strip()}")
            yield read_docker_archive(archive)
    else:
        kinds = "oci:DIR[:TAG], docker-archive:FILE, docker-daemon:IMAGE"
        raise SourceError(f"unknown source {source!r}: {kinds}")


# --- OCI image layout -----------------------------------------------------------------


def read_oci_layout(directory: Path, tag: str | None) -> Image:
    try:
        index = json.loads((directory / "index.json").read_text())
    except (OSError, ValueError) as error:
        raise SourceError(f"{directory}: not an OCI layout ({error})") from error
    entries = index.get("manifests", [])
    if tag is not None:
        entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        wanted = tag or "(any tag)"
        raise SourceError(f"{directory}: {len(entries)} manifests match {wanted}; name exactly one")
    image = Image(tag=tag)
    _add_manifest(directory, entries[0], image)
    return image


def _blob_path(directory: Path, digest: str) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return directory / "blobs" / algorithm / encoded


def _add_manifest(directory: Path, descriptor: dict, image: Image) -> None:
    digest = descriptor["digest"]
    body = _blob_path(directory, digest).read_bytes()
    if f"sha256:{hashlib.sha256(body).hexdigest()}" != digest:
        raise SourceError(f"{directory}: manifest {digest} does not match its digest")
    document = json.loads(body)
    media_type = descriptor.get("mediaType") or document.get("mediaType") or OCI_MANIFEST
    if media_type in INDEX_TYPES:
        for child in document.get("manifests", []):
            if _blob_path(directory, child["digest"]).exists():
                _add_manifest(directory, child, image)
            else:  # an index listing platforms the layout does not hold: cannot push whole
                raise SourceError(f"{directory}: index lists {child['digest']}, not in the layout")
    else:
        for blob in [document.get("config"), *document.get("layers", [])]:
            if blob:
                path = _blob_path(directory, blob["digest"])
                if not path.exists():
                    raise SourceError(f"{directory}: blob {blob['digest']} missing")
                image.blobs[blob["digest"]] = BlobFile(blob["digest"], int(blob["size"]), str(path))
    if all(m.digest != digest for m in image.manifests):
        image.manifests.append(Manifest(digest, media_type, body))


# --- docker save ----------------------------------------------------------------------


def read_docker_archive(path: str) -> Image:
    try:
        archive = tarfile.open(path, "r:")  # docker save writes plain tar: members read in place
    except (OSError, tarfile.TarError) as error:
        raise SourceError(f"{path}: not a docker save archive ({error})") from error
    with archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
        if "manifest.json" not in members:
            raise SourceError(f"{path}: no manifest.json (not docker save output)")
        saved = json.loads(archive.extractfile(members["manifest.json"]).read())
        if not saved:
            raise SourceError(f"{path}: manifest.json lists no image")
        entry = saved[0]
        config_member = members[entry["Config"]]
        config_body = archive.extractfile(config_member).read()
        config_digest = f"sha256:{hashlib.sha256(config_body).hexdigest()}"
        image = Image()
        config_file = BlobFile(config_digest, len(config_body), path, config_member.offset_data)
        image.blobs[config_digest] = config_file
        layers = []
        for name in entry["Layers"]:
            member = members[name]
            digest = _sha256_of(path, member.offset_data, member.size)
            with open(path, "rb") as file:
                magic = os.pread(file.fileno(), 2, member.offset_data)
            media_type = OCI_LAYER + ("+gzip" if magic == b"\x1f\x8b" else "")
            image.blobs[digest] = BlobFile(digest, member.size, path, member.offset_data)
            layers.append({"mediaType": media_type, "digest": digest, "size": member.size})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_body)},
        "layers": layers,
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    image.manifests.append(Manifest(f"sha256:{hashlib.sha256(body).hexdigest()}", OCI_MANIFEST, body))
    tags = entry.get("RepoTags") or []
    if tags:
        image.tag = tags[0].rsplit(":", 1)[-1]
    return image
