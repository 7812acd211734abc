"""The bad-input matrix: every rejected request answers the spec's error envelope
({"errors": [{"code", "message", "detail"?}]}, distribution-spec "Error Codes") with
the right status and code, and changes nothing that is stored."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from oci import (
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    MiB,
    assert_error,
    descriptor,
    make_image,
    make_index,
    path_of,
    push_image,
    send_raw,
    sha256,
    sha512,
    upload_path,
)

GOOD = sha256(b"some blob")  # well-formed, of nothing stored
UNKNOWN_UPLOAD = "00000000-0000-4000-8000-000000000000"
BAD_DIGESTS = {
    "short": "sha256:abc",
    "upper-hex": "sha256:" + "A" * 64,
    "not-hex": "sha256:" + "g" * 64,
    "no-algorithm": "a" * 64 + ":",
    "unsupported-algorithm": "md5:" + "a" * 32,
    "sha512-too-short": "sha512:" + "a" * 64,
    "very-long": "sha256:" + "a" * 5000,
}


@dataclass
class World:
    """What exists before a bad request that refers to something: an image (a config, no
    layers) tagged v1 in team/app, and an upload in progress there holding 100 bytes.
    Requests that refer to nothing run against an empty registry (cheaper, and any write
    would show just as well)."""

    image: Any
    upload: str  # the upload's location
    values: dict = field(default_factory=dict)  # what a Case's path may name


def build_world(client) -> World:
    image = make_image(layer_sizes=())
    push_image(client, "team/app", image, "v1")
    response = client.post("/v2/team/app/blobs/uploads/")
    location = upload_path(response.headers["Location"])
    response = client.patch(location, content=os.urandom(100), headers={"Content-Range": "0-99"})
    assert response.status_code == 202
    return World(
        image,
        location,
        {
            "upload": location,
            # The id alone (no capability: these cases send it to the registry's host).
            "upload_id": urlsplit(location).path.rsplit("/", 1)[1],
            "manifest": image.digest,
            "blob": sha256(image.config),
        },
    )


Body = bytes | Callable[[World], bytes]


@dataclass
class Case:
    method: str
    path: str  # formatted with World.values
    status: int
    code: str
    body: Body = b""
    headers: dict = field(default_factory=dict)
    raw: bool = False  # send the path byte for byte (no client-side normalisation)
    stream: bool = False  # send the body without Content-Length
    world: bool = False  # needs the World even though it names nothing in it

    @property
    def needs_world(self) -> bool:
        return self.world or "{" in self.path or callable(self.body)


# --- shorthand for the table ---------------------------------------------------------------

APP = "/v2/team/app"
UPLOADS = f"{APP}/blobs/uploads/"
M = {"Content-Type": OCI_MANIFEST}


def image_document(w: World, **changes) -> dict:
    return {**json.loads(w.image.manifest), **changes}


def doc(**changes) -> Callable[[World], bytes]:
    """The world's image manifest with top-level fields changed."""
    return lambda w: json.dumps(image_document(w, **changes)).encode()


def doc_with(change: Callable[[World], dict]) -> Callable[[World], bytes]:
    """The world's image manifest with the fields ``change(world)`` returns."""
    return lambda w: json.dumps(image_document(w, **change(w))).encode()


def layer(digest: str | Callable[[World], str], size: Any = 100) -> Callable[[World], bytes]:
    """The world's image manifest with one layer, ``digest`` of ``size``."""
    return doc_with(
        lambda w: {
            "layers": [
                {"mediaType": OCI_LAYER, "size": size, "digest": digest(w) if callable(digest) else digest}
            ]
        }
    )


def world_blob(w: World) -> str:
    return w.values["blob"]


def the_image(w: World) -> bytes:
    return w.image.manifest


def oversized(w: World) -> bytes:
    document = image_document(w, **{"x-padding": ""})
    document["x-padding"] = "x" * (4 * MiB + 1 - len(json.dumps(document)))
    return json.dumps(document).encode()


def get(path, status, code, **kw) -> Case:
    return Case("GET", path, status, code, **kw)


def post(path, status, code, body=b"", **kw) -> Case:
    return Case("POST", path, status, code, body, **kw)


def push(
    body: Body, status=400, code="MANIFEST_INVALID", *, at=f"{APP}/manifests/v2", headers=None, **kw
) -> Case:
    """PUT a manifest (by default an OCI image manifest, as tag v2 of team/app)."""
    return Case("PUT", at, status, code, body, M if headers is None else headers, **kw)


def chunk(content_range: str, body=b"abc", method="PATCH", at="{upload}") -> Case:
    path = at if method == "PATCH" else f"{at}?digest={GOOD}"
    return Case(method, path, 416, "RANGE_INVALID", body, {"Content-Range": content_range})


def on_upload(method: str, at: str, **kw) -> Case:
    path = at + (f"?digest={GOOD}" if method == "PUT" else "")
    body = b"x" if method in ("PATCH", "PUT") else b""
    return Case(method, path, 404, "BLOB_UPLOAD_UNKNOWN", body, **kw)


BLOB = f"{APP}/blobs"
MANIFESTS = f"{APP}/manifests"
INDEX = {"Content-Type": OCI_INDEX}

CASES: dict[str, Case] = {
    # --- digests: malformed, unsupported, or not matching the content ---------------------
    **{
        f"blob-get-digest-{name}": get(f"{BLOB}/{digest}", 400, "DIGEST_INVALID")
        for name, digest in BAD_DIGESTS.items()
    },
    "blob-head-bad-digest": Case("HEAD", f"{BLOB}/sha256:abc", 400, "DIGEST_INVALID"),
    "blob-delete-bad-digest": Case("DELETE", f"{BLOB}/sha256:abc", 400, "DIGEST_INVALID"),
    "monolithic-bad-digest": post(f"{UPLOADS}?digest=sha256:abc", 400, "DIGEST_INVALID", b"data"),
    "monolithic-mismatch": post(f"{UPLOADS}?digest={GOOD}", 400, "DIGEST_INVALID", b"other data"),
    "monolithic-mismatch-sha512": post(f"{UPLOADS}?digest={sha512(b'x')}", 400, "DIGEST_INVALID", b"y"),
    "monolithic-mismatch-multipart": post(
        f"{UPLOADS}?digest={GOOD}", 400, "DIGEST_INVALID", b"z" * (4 * MiB + 1000)
    ),
    "monolithic-mismatch-streamed": post(
        f"{UPLOADS}?digest={GOOD}", 400, "DIGEST_INVALID", b"z" * 3000, stream=True
    ),
    "mount-bad-digest": post(f"{UPLOADS}?mount=sha256:abc&from=team/app", 400, "DIGEST_INVALID"),
    "put-mismatch": Case("PUT", "{upload}?digest=" + GOOD, 400, "DIGEST_INVALID"),
    "put-mismatch-with-chunk": Case("PUT", "{upload}?digest=" + GOOD, 400, "DIGEST_INVALID", b"more"),
    "put-bad-digest": Case("PUT", "{upload}?digest=sha256:abc", 400, "DIGEST_INVALID"),
    "put-no-digest": Case("PUT", "{upload}", 400, "DIGEST_INVALID", b"more"),
    "manifest-get-bad-digest": get(f"{MANIFESTS}/sha256:abc", 400, "DIGEST_INVALID"),
    "manifest-delete-bad-digest": Case("DELETE", f"{MANIFESTS}/sha256:abc", 400, "DIGEST_INVALID"),
    "manifest-put-wrong-digest": push(the_image, 400, "DIGEST_INVALID", at=f"{MANIFESTS}/{GOOD}"),
    "manifest-put-bad-digest": push(the_image, 400, "DIGEST_INVALID", at=f"{MANIFESTS}/sha256:abc"),
    "referrers-bad-digest": get(f"{APP}/referrers/sha256:abc", 400, "DIGEST_INVALID"),
    # --- names, path traversal included ---------------------------------------------------
    "name-upper-case": post("/v2/Team/App/blobs/uploads/", 400, "NAME_INVALID"),
    "name-dot-dot": post("/v2/team/../app/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    "name-traversal-root": post("/v2/../etc/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    "name-traversal-encoded": post("/v2/a/%2e%2e/b/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    "name-traversal-encoded-upper": push(
        the_image, 400, "NAME_INVALID", at="/v2/a/%2E%2E/%2E%2E/manifests/v1", raw=True
    ),
    "name-encoded-slash": post("/v2/a%2F..%2Fb/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    "name-dot": get("/v2/team/./app/tags/list", 400, "NAME_INVALID", raw=True),
    "name-empty-component": post("/v2/a//b/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    "name-trailing-slash": get("/v2/team/app//tags/list", 400, "NAME_INVALID", raw=True),
    "name-leading-dash": post("/v2/-app/blobs/uploads/", 400, "NAME_INVALID"),
    "name-double-dot-separator": post("/v2/a..b/blobs/uploads/", 400, "NAME_INVALID"),
    "name-256-chars": post("/v2/" + "a" * 256 + "/blobs/uploads/", 400, "NAME_INVALID"),
    "name-256-chars-components": post(
        "/v2/" + "/".join(["abcdefg"] * 33) + "/blobs/uploads/", 400, "NAME_INVALID"
    ),
    "name-unicode": post("/v2/caf%C3%A9/blobs/uploads/", 400, "NAME_INVALID", raw=True),
    # The digest matches the body: only the name is wrong.
    "name-monolithic": post(f"/v2/Bad/blobs/uploads/?digest={GOOD}", 400, "NAME_INVALID", b"some blob"),
    "name-blob-get": get("/v2/Bad/blobs/{blob}", 400, "NAME_INVALID"),
    "name-manifest-put": push(the_image, 400, "NAME_INVALID", at="/v2/Team/manifests/v1"),
    "name-tags": get("/v2/TEAM/tags/list", 400, "NAME_INVALID"),
    "name-referrers": get("/v2/Team/referrers/{manifest}", 400, "NAME_INVALID"),
    "name-upload-patch": Case("PATCH", "/v2/Team/blobs/uploads/{upload_id}", 400, "NAME_INVALID", b"x"),
    # --- tags -----------------------------------------------------------------------------
    "tag-leading-dot": push(the_image, 400, "TAG_INVALID", at=f"{MANIFESTS}/.v1"),
    "tag-129-chars": push(the_image, 400, "TAG_INVALID", at=f"{MANIFESTS}/" + "t" * 129),
    # GET of a reference that is no tag: no such manifest can exist (distribution-spec
    # "Pulling manifests", the conformance suite's `.INVALID_MANIFEST_NAME`).
    "tag-get": get(f"{MANIFESTS}/-v1", 404, "MANIFEST_UNKNOWN"),
    "tag-delete": Case("DELETE", f"{MANIFESTS}/v1!", 400, "TAG_INVALID"),
    # --- manifests: not a manifest, invalid, or referring to what is not there --------------
    "manifest-not-json": push(b"{not json"),
    "manifest-not-utf8": push(b"\xff\xfe{}"),
    "manifest-empty-body": push(b""),
    "manifest-json-array": push(b"[]"),
    "manifest-schema-1": push(doc(schemaVersion=1)),
    "manifest-schema-1-signed": push(
        json.dumps(
            {
                "schemaVersion": 1,
                "name": "team/app",
                "tag": "v2",
                "architecture": "amd64",
                "fsLayers": [{"blobSum": GOOD}],
                "history": [],
                "signatures": [],
            }
        ).encode(),
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    ),
    "manifest-unknown-media-type": push(
        doc(mediaType="application/json"), headers={"Content-Type": "application/json"}
    ),
    "manifest-no-media-type-anywhere": push(
        lambda w: json.dumps({k: v for k, v in image_document(w).items() if k != "mediaType"}).encode(),
        headers={},
    ),
    "manifest-content-type-mismatch": push(the_image, headers={"Content-Type": DOCKER_MANIFEST}),
    "manifest-index-as-image": push(lambda w: make_index([w.image])[0]),
    "manifest-no-config": push(doc(config=None)),
    "manifest-layers-not-list": push(doc(layers={})),
    "manifest-layer-bad-digest": push(layer("sha256:abc")),
    "manifest-layer-negative-size": push(layer(world_blob, size=-1)),
    "manifest-layer-size-string": push(layer(world_blob, size="100")),
    "manifest-layer-no-media-type": push(doc(layers=[{"digest": GOOD, "size": 9}])),
    "manifest-annotations-not-strings": push(doc(annotations={"a": 1})),
    "manifest-subject-bad-digest": push(doc(subject={"mediaType": OCI_MANIFEST, "digest": "x", "size": 1})),
    "manifest-artifact-type-not-string": push(doc(artifactType=["a"])),
    "manifest-artifact-type-not-media-type": push(doc(artifactType="sbom")),
    "manifest-artifact-type-huge": push(doc(artifactType="a/" + "b" * 500_000)),
    "manifest-config-media-type-huge": push(
        doc_with(lambda w: {"config": {**image_document(w)["config"], "mediaType": "a/" + "b" * 500_000}})
    ),
    "manifest-one-digest-two-sizes": push(layer(world_blob, size=99)),  # the config's digest
    "manifest-missing-layer": push(
        doc(layers=[descriptor(OCI_LAYER, b"never pushed")]), 404, "MANIFEST_BLOB_UNKNOWN"
    ),
    "manifest-missing-config": push(
        doc(config=descriptor(OCI_CONFIG, b"never pushed")), 404, "MANIFEST_BLOB_UNKNOWN"
    ),
    "manifest-blob-wrong-size": push(
        doc_with(lambda w: {"config": {**image_document(w)["config"], "size": 99}}),
        404,
        "MANIFEST_BLOB_UNKNOWN",
    ),
    "manifest-blob-in-other-repo": push(
        the_image, 404, "MANIFEST_BLOB_UNKNOWN", at="/v2/team/other/manifests/v1"
    ),
    "index-missing-child": push(
        lambda w: make_index([w.image, make_image()])[0],
        404,
        "MANIFEST_BLOB_UNKNOWN",
        at=f"{MANIFESTS}/multi",
        headers=INDEX,
    ),
    "index-child-in-other-repo": push(
        lambda w: make_index([w.image])[0],
        404,
        "MANIFEST_BLOB_UNKNOWN",
        at="/v2/team/other/manifests/multi",
        headers=INDEX,
    ),
    "manifest-oversized": push(oversized, 413, "PAYLOAD_TOO_LARGE"),
    "manifest-oversized-streamed": push(oversized, 413, "PAYLOAD_TOO_LARGE", stream=True),
    # --- chunks: bad Content-Range, out of order, wrong length (416 with Range, Location) ---
    "content-range-garbage": chunk("abc"),
    "content-range-reversed": chunk("105-100"),
    "content-range-open": chunk("100-"),
    "content-range-negative": chunk("-100-102"),
    "content-range-star": chunk("bytes */*"),
    "content-range-put-garbage": chunk("x-y", method="PUT"),
    "chunk-out-of-order": chunk("200-202"),
    "chunk-overlap": chunk("98-100"),
    "chunk-shorter-than-range": chunk("100-199"),
    "chunk-longer-than-range": chunk("100-102", b"abcdef"),
    "put-chunk-out-of-order": chunk("300-302", method="PUT"),
    # --- uploads that are not there (never were, or belong to another repository) ---------
    **{
        f"unknown-upload-{m.lower()}": on_upload(m, f"{UPLOADS}{UNKNOWN_UPLOAD}")
        for m in ("GET", "PATCH", "PUT", "DELETE")
    },
    **{
        f"upload-of-other-repo-{m.lower()}": on_upload(m, "/v2/team/other/blobs/uploads/{upload_id}")
        for m in ("GET", "PATCH", "PUT", "DELETE")
    },
    "upload-of-other-repo-ranged": Case(
        "PATCH",
        "/v2/team/other/blobs/uploads/{upload_id}",
        404,
        "BLOB_UPLOAD_UNKNOWN",
        b"abc",
        {"Content-Range": "100-102"},
    ),
    "upload-of-other-repo-bad-range": Case(
        "PATCH",
        "/v2/team/other/blobs/uploads/{upload_id}",
        404,
        "BLOB_UPLOAD_UNKNOWN",
        b"abc",
        {"Content-Range": "x"},
    ),
    # --- unknown things -------------------------------------------------------------------
    "blob-unknown": get(f"{BLOB}/{GOOD}", 404, "BLOB_UNKNOWN"),
    "blob-delete-unknown": Case("DELETE", f"{BLOB}/{GOOD}", 404, "BLOB_UNKNOWN"),
    "blob-of-other-repo": get("/v2/team/other/blobs/{blob}", 404, "BLOB_UNKNOWN"),
    "manifest-unknown": get(f"{MANIFESTS}/v9", 404, "MANIFEST_UNKNOWN", world=True),
    "manifest-delete-unknown-tag": Case("DELETE", f"{MANIFESTS}/v9", 404, "MANIFEST_UNKNOWN", world=True),
    "manifest-delete-of-other-repo": Case(
        "DELETE", "/v2/team/other/manifests/{manifest}", 404, "MANIFEST_UNKNOWN"
    ),
    "tags-unknown-repo": get("/v2/team/other/tags/list", 404, "NAME_UNKNOWN", world=True),
    "tags-bad-n": get(f"{APP}/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID", world=True),
    "catalog-bad-n": get("/v2/_catalog?n=x", 400, "PAGINATION_NUMBER_INVALID"),
    "route-unknown": get("/v3/", 404, "NOT_FOUND"),
    "route-unknown-under-v2": post(f"{UPLOADS}x/y", 404, "NOT_FOUND"),
    "method-not-allowed": post(f"{MANIFESTS}/v1", 405, "UNSUPPORTED", b"{}"),
}


def _one_query(path: str) -> str:
    """A path template's ``?digest=`` joined to a query its upload Location already has
    (the upload service's capability)."""
    head, mark, rest = path.partition("?")
    return head + mark + rest.replace("?", "&")


def send(client, case: Case, world: World | None):
    path = _one_query(case.path.format(**world.values) if world else case.path)
    body = case.body(world) if callable(case.body) else case.body
    if case.raw:
        return send_raw(client, case.method, path, body, case.headers)
    if case.stream:
        content: Any = (body[i : i + 65536] for i in range(0, len(body), 65536))
    else:
        content = body
    return client.request(case.method, path, content=content, headers=case.headers)


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_rejected_and_nothing_changed(client, storage, case):
    world = build_world(client) if case.needs_world else None
    before = storage.snapshot()
    response = send(client, case, world)
    error = assert_error(response, case.status, case.code)
    if error:
        assert error["message"]
        assert "Traceback" not in json.dumps(error)
    if case.status == 416:
        # The spec's 416 tells the client where the upload stands.
        assert response.headers["Range"] == "0-99"
        assert path_of(response.headers["Location"]) == path_of(world.upload)
    assert storage.snapshot() == before
    if world is None:
        return
    # The world is intact: the image and the upload still work.
    assert client.get(f"{MANIFESTS}/v1").content == world.image.manifest
    status = client.get(world.upload)
    assert status.status_code == 204 and status.headers["Range"] == "0-99"
