"""The API Gateway events in events/: one per route, a push and pull told in order.

They are built by the local gateway's own event builder, so ``sam local invoke -e``,
the function tests and the gateway all speak the same payload 2.0. Regenerate with
``python -m skyport_cli.sample_events events`` after changing the builder or the story
(a test checks the files are current). Fed in file-name order to a fresh registry,
each gets the answer ``EXPECTED`` names; ``UPLOAD_ID`` stands for the id the latest
``POST .../blobs/uploads/`` returned, which a caller substitutes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from urllib.parse import quote

from .gateway import build_event

REPOSITORY = "team/app"
UPLOAD_ID = "00000000-0000-4000-8000-000000000000"
NOW = 1767225600.0  # 2026-01-01T00:00:00Z: fixed, so the files do not churn
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# What skopeo sends as separate Accept lines; API Gateway joins them with commas.
ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = json.dumps(
    {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
    separators=(",", ":"),
).encode()
LAYER = bytes(range(256)) * 4  # binary, so it travels base64-encoded
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(CONFIG),
            "size": len(CONFIG),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": _digest(LAYER),
                "size": len(LAYER),
            }
        ],
    },
    indent=2,
).encode()
ARTIFACT = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(CONFIG),
            "size": len(CONFIG),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": _digest(LAYER),
                "size": len(LAYER),
            }
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": _digest(MANIFEST), "size": len(MANIFEST)},
    },
    indent=2,
).encode()

BLOB = f"/v2/{REPOSITORY}/blobs/{_digest(LAYER)}"
UPLOADS = f"/v2/{REPOSITORY}/blobs/uploads/"
UPLOAD = UPLOADS + UPLOAD_ID
HALF = len(LAYER) // 2
OCTETS = [("content-type", "application/octet-stream")]

# name: (method, path, query, headers, body, expected status)
STORY: dict[str, tuple[str, str, str, list[tuple[str, str]], bytes, int]] = {
    "01-get-version-check": ("GET", "/v2/", "", [], b"", 200),
    "02-post-upload-monolithic": ("POST", UPLOADS, f"digest={_digest(CONFIG)}", OCTETS, CONFIG, 201),
    "03-post-upload-start": ("POST", UPLOADS, "", [], b"", 202),
    "04-patch-upload-chunk": (
        "PATCH",
        UPLOAD,
        "",
        [*OCTETS, ("content-range", f"0-{HALF - 1}")],
        LAYER[:HALF],
        202,
    ),
    "05-get-upload-status": ("GET", UPLOAD, "", [], b"", 204),
    "06-put-upload-finish": (
        "PUT",
        UPLOAD,
        f"digest={_digest(LAYER)}",
        [*OCTETS, ("content-range", f"{HALF}-{len(LAYER) - 1}")],
        LAYER[HALF:],
        201,
    ),
    "07-head-blob": ("HEAD", BLOB, "", [], b"", 200),
    "08-get-blob": ("GET", BLOB, "", [], b"", 307),
    "09-put-manifest": (
        "PUT",
        f"/v2/{REPOSITORY}/manifests/1.0",
        "",
        [("content-type", OCI_MANIFEST)],
        MANIFEST,
        201,
    ),
    "10-head-manifest": (
        "HEAD",
        f"/v2/{REPOSITORY}/manifests/1.0",
        "",
        [("accept", a) for a in ACCEPT],
        b"",
        200,
    ),
    "11-get-manifest": (
        "GET",
        f"/v2/{REPOSITORY}/manifests/1.0",
        "",
        [("accept", a) for a in ACCEPT],
        b"",
        200,
    ),
    "12-get-manifest-by-digest": (
        "GET",
        f"/v2/{REPOSITORY}/manifests/{_digest(MANIFEST)}",
        "",
        [("accept", a) for a in ACCEPT],
        b"",
        200,
    ),
    "13-get-tags-list": ("GET", f"/v2/{REPOSITORY}/tags/list", "n=10", [], b"", 200),
    "14-get-catalog": ("GET", "/v2/_catalog", "", [], b"", 200),
    "15-put-manifest-referrer": (
        "PUT",
        f"/v2/{REPOSITORY}/manifests/{_digest(ARTIFACT)}",
        "",
        [("content-type", OCI_MANIFEST)],
        ARTIFACT,
        201,
    ),
    "16-get-referrers": ("GET", f"/v2/{REPOSITORY}/referrers/{_digest(MANIFEST)}", "", [], b"", 200),
    "17-post-upload-mount": (
        "POST",
        "/v2/team/other/blobs/uploads/",
        f"mount={_digest(LAYER)}&from={quote(REPOSITORY, safe='')}",
        [],
        b"",
        201,
    ),
    "18-post-upload-start": ("POST", UPLOADS, "", [], b"", 202),
    "19-delete-upload": ("DELETE", UPLOAD, "", [], b"", 204),
    "20-delete-manifest-referrer": (
        "DELETE",
        f"/v2/{REPOSITORY}/manifests/{_digest(ARTIFACT)}",
        "",
        [],
        b"",
        202,
    ),
    "21-delete-blob": ("DELETE", f"/v2/team/other/blobs/{_digest(LAYER)}", "", [], b"", 202),
}
EXPECTED = {name: step[-1] for name, step in STORY.items()}


def events() -> dict[str, dict]:
    out = {}
    for number, (name, (method, path, query, headers, body, _)) in enumerate(STORY.items(), start=1):
        common = [("host", "registry.example.com"), ("user-agent", "skopeo/1.13.3")]
        raw_headers = [(k.encode(), v.encode()) for k, v in [*common, *headers]]
        event = build_event(
            method,
            path.encode(),
            query.encode(),
            raw_headers,
            body,
            source_ip="198.51.100.7",
            request_id=f"EvEnT{number:02d}IdAAAA=",
            now=NOW,
        )
        # Fixed, like the request id: the trace id is random per request otherwise.
        event["headers"]["x-amzn-trace-id"] = f"Root=1-69559580-{number:024x}"
        out[name] = event
    return out


def render(event: dict) -> str:
    return json.dumps(event, indent=2) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "events")
    target.mkdir(parents=True, exist_ok=True)
    for name, event in events().items():
        (target / f"{name}.json").write_text(render(event))
    print(f"wrote {len(STORY)} events to {target}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
