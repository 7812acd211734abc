"""A chunking push client, as regctl does it with ``--blob-chunk``: the way to push a
blob bigger than one request can carry behind API Gateway and Lambda.

POST starts the upload and says how big a chunk may be (``OCI-Chunk-Max-Length``,
else ``OCI-Chunk-Min-Length``); each PATCH carries one chunk with its inclusive
``Content-Range``; the closing PUT names the digest.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urljoin

import httpx


def push_in_chunks(http: httpx.Client, repository: str, data: bytes, chunk: int | None = None) -> str:
    """Push ``data`` as a blob of ``repository``; returns its digest. ``chunk`` defaults to
    the largest the registry advertises."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = http.post(f"/v2/{repository}/blobs/uploads/")
    assert response.status_code == 202, response.text
    advertised = response.headers.get("OCI-Chunk-Max-Length") or response.headers.get("OCI-Chunk-Min-Length")
    size = chunk or int(advertised)
    if advertised and response.headers.get("OCI-Chunk-Max-Length"):
        assert size <= int(advertised), f"chunks of {size} bytes exceed what the registry accepts"
    location = urljoin(str(http.base_url), response.headers["Location"])
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        response = http.patch(
            location,
            content=piece,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(piece) - 1}",
            },
        )
        assert response.status_code == 202, (start, response.status_code, response.text)
        assert response.headers["Range"] == f"0-{start + len(piece) - 1}"
        location = urljoin(location, response.headers["Location"])
    separator = "&" if "?" in location else "?"
    response = http.put(f"{location}{separator}digest={digest}")
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    return digest


def pull_by_redirect(http: httpx.Client, repository: str, digest: str) -> bytes:
    """GET the blob: a 307 to a presigned S3 URL, followed without the registry's headers."""
    response = http.get(f"/v2/{repository}/blobs/{digest}")
    assert response.status_code == 307, (response.status_code, response.text)
    with httpx.Client(trust_env=False, timeout=120) as s3:
        blob = s3.get(response.headers["Location"])
    assert blob.status_code == 200, blob.text[:500]
    return blob.content
