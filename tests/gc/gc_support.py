"""Helpers of the garbage collection suite (issue 12): the collector's CLI, and what
"every committed image is pullable" means."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import redirect_stdout

import httpx
from oci import sha256
from skyport.registry import Registry
from skyport_cli.main import main
from starlette.testclient import TestClient


def skyport_gc(registry: Registry, *arguments: str) -> tuple[int, str]:
    """`skyport gc ARGUMENTS` on the test's table and bucket: (exit status, stdout)."""
    settings = registry.settings
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            main(
                [
                    "gc",
                    *arguments,
                    "--table",
                    settings.table,
                    "--bucket",
                    settings.bucket,
                    "--dynamodb-endpoint",
                    settings.dynamodb_endpoint or "",
                    "--s3-endpoint",
                    settings.s3_endpoint or "",
                ]
            )
        except SystemExit as exit_:
            return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def skyport_gc_json(registry: Registry, *arguments: str) -> dict:
    status, out = skyport_gc(registry, *arguments, "--json")
    assert status == 0, out
    return json.loads(out)


# One connection pool for the presigned URLs' GETs (a new client per GET costs ~30 ms).
_s3_http = httpx.Client(timeout=30)


def fetch(url: str) -> bytes:
    """GET a presigned S3 URL (the target of a blob redirect) from the moto server."""
    response = _s3_http.get(url)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.content


def assert_pullable(
    client: TestClient, repository: str, reference: str, read: Callable[[str], bytes] = fetch
) -> None:
    """The manifest by ``reference``, every manifest it names (an index's children), and
    every blob they reference: GET answers, the redirect leads to the object, and the
    bytes are the digest's."""
    response = client.get(
        f"/v2/{repository}/manifests/{reference}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
        },
    )
    assert response.status_code == 200, (repository, reference, response.text)
    document = json.loads(response.content)
    for child in document.get("manifests", []):
        assert_pullable(client, repository, child["digest"], read)
    for descriptor in [document["config"], *document.get("layers", [])] if "config" in document else []:
        blob = client.get(f"/v2/{repository}/blobs/{descriptor['digest']}")
        assert blob.status_code == 307, (repository, descriptor["digest"], blob.text)
        assert sha256(read(blob.headers["Location"])) == descriptor["digest"]


def object_keys(registry: Registry, prefix: str = "") -> set[str]:
    s3 = registry.clients.s3
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=registry.settings.bucket, Prefix=prefix):
        found.update(entry["Key"] for entry in page.get("Contents", []))
    return found


def items(registry: Registry, prefix: str) -> set[tuple[str, str]]:
    """(PK, SK) of every item whose PK starts with ``prefix``."""
    dynamodb = registry.clients.dynamodb
    found: set[tuple[str, str]] = set()
    for page in dynamodb.get_paginator("scan").paginate(TableName=registry.settings.table):
        for item in page["Items"]:
            if item["PK"]["S"].startswith(prefix):
                found.add((item["PK"]["S"], item["SK"]["S"]))
    return found
