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
    """Where to send an upload's next request: its ``Location`` as answered. Relative, it
    is a path on the app; absolute, it names the upload service's host (the uploadsvc
    variant routes by Host), and its query carries the upload's capability."""
    return location


def with_digest(location: str, digest: str) -> str:
    """``location`` with ``digest=`` added to its query, as clients do (keeping the rest:
    the upload service's capability)."""
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}digest={digest}"


def path_of(location: str) -> str:
    """A Location's path and query, whatever host it names."""
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
        response = client.patch(location, content=iter([data[i : i + MiB] for i in range(0, len(data), MiB)]))
        assert response.status_code == 202, response.text
        location = upload_path(response.headers["Location"])
        data_in_put = b""
    elif mode == "chunks":
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            response = client.patch(
                location,
                content=piece,
                headers={
                    "Content-Range": f"{start}-{start + len(piece) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
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
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "nonce": os.urandom(8).hex(),
        }
    ).encode()
    layers = [os.urandom(size) for size in layer_sizes]
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer) for layer in layers],
        **(extra or {}),
    }
    return Image(config, layers, json.dumps(manifest).encode(), media_type)


def push_image(client, repo: str, image: Image, reference: str | None = None) -> str:
    for blob in (image.config, *image.layers):
        push_blob(client, repo, blob, mode="post")
    response = client.put(
        f"/v2/{repo}/manifests/{reference or image.digest}",
        content=image.manifest,
        headers={"Content-Type": image.media_type},
    )
    assert response.status_code == 201, response.text
    return response.headers["Docker-Content-Digest"]


# --- helpers for the API suite ------------------------------------------------------------

OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"  # the image-spec "empty descriptor" blob, sha256:44136fa3…
EMPTY_BLOB_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def assert_error(response, status: int, code: str) -> dict:
    """The spec's error envelope: {"errors": [{"code", "message", "detail"?}]} with ``code``."""
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method == "HEAD":
        return {}  # no body on HEAD
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and body["errors"], body
    for error in body["errors"]:
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), error
        assert set(error) <= {"code", "message", "detail"}, error
    assert code in [error["code"] for error in body["errors"]], body
    return next(error for error in body["errors"] if error["code"] == code)


def make_index(
    children: list[Image], *, docker: bool = False, extra: dict | None = None
) -> tuple[bytes, str]:
    """An OCI image index (or Docker manifest list) over already built images."""
    media_type = DOCKER_LIST if docker else OCI_INDEX
    platforms = [{"architecture": arch, "os": "linux"} for arch in ("amd64", "arm64", "s390x")]
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            descriptor(child.media_type, child.manifest, platform=platforms[i % 3])
            for i, child in enumerate(children)
        ],
        **(extra or {}),
    }
    return json.dumps(document).encode(), media_type


def make_artifact(
    subject: bytes | None = None,
    *,
    subject_type: str = OCI_MANIFEST,
    artifact_type: str = "application/vnd.example.sbom.v1",
    blobs: tuple[bytes, ...] = (),
    annotations: dict | None = None,
) -> Image:
    """An OCI 1.1 artifact: artifactType, the empty config, optional subject."""
    document: dict = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/vnd.example.data", blob) for blob in blobs]
        or [descriptor(OCI_EMPTY, EMPTY_JSON)],
    }
    if subject is not None:
        document["subject"] = descriptor(subject_type, subject)
    if annotations:
        document["annotations"] = annotations
    return Image(EMPTY_JSON, list(blobs), json.dumps(document).encode(), OCI_MANIFEST)


def put_manifest(client, repo: str, reference: str, body: bytes, media_type: str | None):
    headers = {"Content-Type": media_type} if media_type else {}
    return client.put(f"/v2/{repo}/manifests/{reference}", content=body, headers=headers)


def send_raw(client, method: str, raw_path: str, body: bytes = b"", headers: dict | None = None):
    """Send ``raw_path`` byte for byte, straight to the ASGI app: httpx (and so the
    TestClient) would normalise `..` segments away before the registry sees them,
    while a real server hands them through as sent."""
    import asyncio
    from urllib.parse import unquote

    import httpx

    path, _, query = raw_path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = [(k.decode(), v.decode()) for k, v in start["headers"]]
    return httpx.Response(
        start["status"], headers=headers, content=content, request=httpx.Request(method, "http://testserver/")
    )


def fetch(url: str) -> bytes:
    """GET a presigned S3 URL (the target of a blob redirect) from the moto server."""
    import httpx

    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.content
