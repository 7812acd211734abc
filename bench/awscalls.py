"""AWS calls per registry operation, counted at the boto3 layer.

The app runs in-process (starlette's TestClient) on a Registry whose boto3
clients talk to the shared moto server. Two botocore events are counted on
each client: ``before-call`` (an API operation the code invoked) and
``before-send`` (an HTTP request that left the process, retries included).
Presigning a URL is local: it raises neither. The presigned URLs are counted in
the responses instead (a ``Location`` carrying a SigV4 signature), whichever code
signed them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .profiles import Profile, human

DDB_READS = {"GetItem", "Query", "BatchGetItem", "Scan", "TransactGetItems"}


@dataclass
class Tally:
    calls: Counter = field(default_factory=Counter)  # (service, operation) -> API calls
    sends: Counter = field(default_factory=Counter)  # (service, operation) -> HTTP requests

    def count(self, service: str, kind: str = "sends", operations: set[str] | None = None) -> int:
        counter = getattr(self, kind)
        return sum(
            n
            for (svc, op), n in counter.items()
            if svc == service and (operations is None or op in operations)
        )

    def breakdown(self, service: str) -> str:
        ops = sorted((op, n) for (svc, op), n in self.sends.items() if svc == service)
        return " ".join(f"{op}×{n}" if n > 1 else op for op, n in ops) or "-"


class Counting:
    """botocore event handlers on the registry's own clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tally = Tally()

    def attach(self, client: Any, service: str) -> None:
        def on(kind: str):
            def handler(event_name: str, **_: Any) -> None:
                operation = event_name.rsplit(".", 1)[-1]
                with self._lock:
                    getattr(self.tally, kind)[(service, operation)] += 1

            return handler

        client.meta.events.register("before-call", on("calls"))
        client.meta.events.register("before-send", on("sends"))

    def take(self) -> Tally:
        with self._lock:
            tally, self.tally = self.tally, Tally()
        return tally


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read_rule_snapshots(registry: Any) -> None:
    """Each process reads the tag immutability rules, the pull-through cache rules and the
    scan policies once per SKYPORT_IMMUTABILITY_CACHE_SECONDS / SKYPORT_CACHE_RULES_SECONDS /
    SKYPORT_SCAN_POLICY_CACHE_SECONDS (one Query each, 30 s by default:
    skyport/rule_snapshot.py), whatever it serves meanwhile. Read here, before counting, so
    each row is what its operation costs, not which row came first."""
    registry.immutability.rules()
    registry.cache_rules.rules()
    registry.scan_policies.policies()  # the manifest GET and HEAD ask it (issue 14)


def run(endpoint: str, profile: Profile) -> dict:
    from skyport.config import Settings
    from skyport.registry import Registry
    from skyport_api.app import create_app
    from skyport_cli.stack import ensure_stack
    from starlette.testclient import TestClient

    from .services import AWS_KEYS, REGION, skyport_part_size

    for name, value in AWS_KEYS.items():  # the in-process clients sign with these
        os.environ[name] = value
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        bucket=f"bench-calls-{suffix}",
        table=f"bench-calls-{suffix}",
        region=REGION,
        s3_endpoint=endpoint,
        dynamodb_endpoint=endpoint,
        part_size=skyport_part_size(),
    )
    registry = Registry(settings)
    ensure_stack(
        registry.clients.s3, registry.clients.dynamodb, settings.bucket, settings.table, region=REGION
    )
    counting = Counting()
    counting.attach(registry.clients.s3, "s3")
    counting.attach(registry.clients.dynamodb, "dynamodb")
    _read_rule_snapshots(registry)
    part = settings.part_size
    size = profile.calls_blob
    rows: list[dict] = []

    def row(name: str, tally: Tally, budget: dict | None, note: str = "", presigned: int = 0) -> None:
        measured = {
            "dynamodb_calls": tally.count("dynamodb"),
            "dynamodb_reads": tally.count("dynamodb", operations=DDB_READS),
            "s3_calls": tally.count("s3"),
            "s3_get_object": tally.count("s3", operations={"GetObject"}),
            "s3_presigned_urls": presigned,
        }
        over = []
        for key, limit in (budget or {}).items():
            if measured[key] > limit:
                over.append(f"{key} {measured[key]} > {limit}")
        rows.append(
            {
                "operation": name,
                **measured,
                "dynamodb_ops": tally.breakdown("dynamodb"),
                "s3_ops": tally.breakdown("s3"),
                "budget": budget,
                "within_budget": None if budget is None else not over,
                "over": over,
                "note": note,
            }
        )

    with TestClient(create_app(registry), follow_redirects=False) as http:

        def ok(response, status: int):
            assert response.status_code == status, (response.status_code, response.text[:500])
            return response

        def push_whole(repo: str, data: bytes) -> str:
            digest = _digest(data)
            ok(http.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data), 201)
            return digest

        # An image to read back: a config, one layer, a manifest small enough to be inline.
        repo = "bench/calls"
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        layer = os.urandom(64 * 1024)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": push_whole(repo, config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": push_whole(repo, layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        mtype = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        counting.take()
        ok(http.put(f"/v2/{repo}/manifests/1.0", content=manifest, headers=mtype), 201)
        limit = human(settings.inline_manifest_limit)
        row(
            "PUT manifest (inline, new tag)",
            counting.take(),
            None,
            f"{len(manifest)} B body, under the {limit} inline limit",
        )
        for i in range(3):  # more tags and repositories, so the listings have pages
            ok(http.put(f"/v2/{repo}/manifests/1.{i + 1}", content=manifest, headers=mtype), 201)
        counting.take()

        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        manifest_budget = {"dynamodb_calls": 1, "s3_calls": 0}
        blob_budget = {"dynamodb_calls": 1, "s3_calls": 0}
        # The first GET of a manifest in an interval also writes its last-pull time, once
        # the response is out (skyport/pulls.py); the rows after it are every other GET.
        ok(http.get(f"/v2/{repo}/manifests/1.0", headers=accept), 200)
        row(
            "GET manifest, the first of the hour (writes its last pull)",
            counting.take(),
            {"dynamodb_calls": 2, "s3_calls": 0},
        )
        ok(http.get(f"/v2/{repo}/manifests/1.0", headers=accept), 200)
        row("GET manifest by tag", counting.take(), manifest_budget)
        ok(http.get(f"/v2/{repo}/manifests/{_digest(manifest)}", headers=accept), 200)
        row("GET manifest by digest", counting.take(), manifest_budget)
        ok(http.head(f"/v2/{repo}/manifests/1.0", headers=accept), 200)
        row("HEAD manifest by tag", counting.take(), manifest_budget)
        # Cold: the first read of a link this process did not write (another instance
        # pushed it). Warm: the process holds the link (skyport/blob_cache.py), filled on
        # push and on first read; answered from memory, on the event loop.
        cold = Registry(settings)  # a second instance: same table, its own (empty) cache
        counting.attach(cold.clients.dynamodb, "dynamodb")
        counting.attach(cold.clients.s3, "s3")
        _read_rule_snapshots(cold)
        counting.take()
        with TestClient(create_app(cold), follow_redirects=False) as other:
            ok(other.head(f"/v2/{repo}/blobs/{_digest(layer)}"), 200)
            row("HEAD blob", counting.take(), blob_budget, "cold: a first read in this instance")
            location = ok(other.get(f"/v2/{repo}/blobs/{_digest(config)}"), 307).headers["Location"]
            row(
                "GET blob (307 to presigned S3 URL)",
                counting.take(),
                blob_budget,
                "cold, as above; the URL is signed locally: no S3 request",
                presigned=int("X-Amz-Signature=" in location),
            )
        warm_budget = {"dynamodb_calls": 0, "s3_calls": 0}
        ok(http.head(f"/v2/{repo}/blobs/{_digest(layer)}"), 200)
        row("HEAD blob (warm)", counting.take(), warm_budget, "link cached by the push or a read")
        location = ok(http.get(f"/v2/{repo}/blobs/{_digest(layer)}"), 307).headers["Location"]
        row(
            "GET blob (warm)",
            counting.take(),
            warm_budget,
            "link cached; 307, the URL signed locally",
            presigned=int("X-Amz-Signature=" in location),
        )
        ok(http.get(f"/v2/{repo}/tags/list"), 200)
        row("GET tags list", counting.take(), {"dynamodb_calls": 1, "s3_calls": 0})
        ok(http.get("/v2/_catalog?n=100"), 200)
        row("GET catalog page (n=100)", counting.take(), {"dynamodb_calls": 1, "s3_calls": 0})

        # Pushing one blob of `size` bytes.
        blob_budget_s3 = math.ceil(size / part) + 2
        push_budget = {"s3_calls": blob_budget_s3, "s3_get_object": 0}
        detail = f"{human(size)} blob, {human(part)} parts"

        data = os.urandom(size)
        push_whole("bench/push-mono", data)
        row("push blob in 1 request (POST ?digest=)", counting.take(), push_budget, detail)

        data = os.urandom(size)
        start = ok(http.post("/v2/bench/push-put/blobs/uploads/"), 202).headers["Location"]
        ok(http.put(start, params={"digest": _digest(data)}, content=data), 201)
        row("push blob: POST + PUT with body (oras, buildkit)", counting.take(), push_budget, detail)

        data = os.urandom(size)
        start = ok(http.post("/v2/bench/push-patch/blobs/uploads/"), 202).headers["Location"]
        location = ok(http.patch(start, content=data), 202).headers["Location"]
        ok(http.put(location, params={"digest": _digest(data)}), 201)
        tail = size % part
        short = (
            f"; the PATCH (no Content-Range) ends with {human(tail)} left, under S3's "
            f"{human(settings.min_part_size)} minimum part: uploaded at once as a short "
            "last part, which the empty PUT only completes (had another chunk come, it "
            "would be folded in server-side: CompleteMPU + CreateMPU + UploadPartCopy)"
            if 0 < tail < settings.min_part_size
            else ""
        )
        row("push blob: POST + PATCH + PUT (skopeo, docker)", counting.take(), push_budget, detail + short)

        data = os.urandom(size)
        chunk = profile.calls_chunk
        location = ok(http.post("/v2/bench/push-chunks/blobs/uploads/"), 202).headers["Location"]
        for offset in range(0, size, chunk):
            piece = data[offset : offset + chunk]
            headers = {
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                "Content-Type": "application/octet-stream",
            }
            location = ok(http.patch(location, content=piece, headers=headers), 202).headers["Location"]
        ok(http.put(location, params={"digest": _digest(data)}), 201)
        row(
            f"push blob in {human(chunk)} chunks (POST + {math.ceil(size / chunk)} PATCH + PUT)",
            counting.take(),
            None,
            detail + "; a chunk that leaves less than a part keeps it as a tail object, read "
            "back by the next chunk; the empty PUT puts the last tail in server-side "
            "(UploadPartCopy)",
        )

    return {
        "part_size": part,
        "blob_size": size,
        "chunk_size": profile.calls_chunk,
        "inline_manifest_limit": settings.inline_manifest_limit,
        "rows": rows,
    }
