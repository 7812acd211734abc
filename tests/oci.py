"""Client-side helpers for tests: build blobs and manifests, push them over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def upload_path(location: str) -> str:
    # Locations may be absolute or relative; tests talk to the app by path.
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def push_blob(client, repo: str, data: bytes, *, mode: str = "patch", chunk: int = 5 * MiB) -> str:
    """Push ``data`` the way a given client does; returns its digest.
    mode: "post" (monolithic POST ?digest=), "put" (POST then PUT with body),
    "patch" (POST, one streamed PATCH, PUT), "chunks" (Content-Range chunks)."""
    digest = sha256(data)
    if mode == "post":
        response = client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data)
        assert response.status_code == 201, response.text
        return digest
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    location = upload_path(response.headers["Location"])
    if mode == "patch":
        response = client.patch(location, content=iter([data[i:i + MiB] for i in range(0, len(data), MiB)]))
        assert response.status_code == 202, response.text
        location = upload_path(response.headers["Location"])
        data_in_put = b""
    elif mode == "chunks":
        for start in range(0, len(data), chunk):
            piece = data[start:start + chunk]
            response = client.patch(location, content=piece, headers={
                "Content-Range": f"{start}-{start + len(piece) - 1}", "Content-Type": "application/octet-stream"})
            assert response.status_code == 202, response.text
            location = upload_path(response.headers["Location"])
        data_in_put = b""
    else:
        data_in_put = data
    separator = "&" if "?" in location else "?"
    response = client.put(f"{location}{separator}digest={digest}", content=data_in_put)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    return digest


@dataclass
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(layer_sizes=(1024, 2048), *, docker: bool = False, extra: dict | None = None) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}, "nonce": os.urandom(8).hex()}).encode()
    layers = [os.urandom(size) for size in layer_sizes]
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer) for layer in layers],
        **(extra or {}),
    }
    return Image(config, layers, json.dumps(manifest).encode(), media_type)


def push_image(client, repo: str, image: Image, reference: str | None = None) -> str:
    for blob in (image.config, *image.layers):
        push_blob(client, repo, blob, mode="post")
    response = client.put(f"/v2/{repo}/manifests/{reference or image.digest}", content=image.manifest,
                          headers={"Content-Type": image.media_type})
    assert response.status_code == 201, response.text
    return response.headers["Docker-Content-Digest"]
