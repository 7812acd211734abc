"""A request killed mid-upload (issue 9, section 4): the client can resume the session,
or, if it never comes back, the session and what the request left in S3 expire.

Three ways for a PATCH to die after part of its body arrived:

- ``disconnect``: the client goes away (the ASGI server reports ``http.disconnect``);
- ``cancel``: the request's task is cancelled (an ASGI server's own timeout);
- ``frozen``: Lambda's timeout. The function stops where it is and nothing after runs:
  no error path, no lease given back. The request's coroutine is parked for good while
  the checks run; the lease it holds expires after ``upload_lease_seconds`` (2 s here).

The requests go straight to the ASGI app (the Lambda gateway reads a body whole before
the function starts, so no request can die half way through its body there).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from faultharness import Harness, make_harness
from faultinject import STATS
from oci import MiB, assert_error, sha256, upload_path
from skyport.config import Settings
from skyport.storage import keys

LEASE_SECONDS = 2


@pytest.fixture
def killing(
    settings_for_faults: Settings, template: dict, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    yield from make_harness(
        replace(settings_for_faults, upload_lease_seconds=LEASE_SECONDS), template, monkeypatch
    )


class KilledRequest:
    """A request sent straight to the ASGI app, on an event loop of its own, whose body
    stops after ``pieces``: then the client disconnects, or the request hangs (until
    ``cancel``)."""

    def __init__(
        self, app: Any, method: str, path: str, pieces: list[bytes], headers: dict[str, str], disconnect: bool
    ) -> None:
        self._pieces, self._disconnect = list(pieces), disconnect
        self.body_taken = threading.Event()  # the app asked for more than the pieces
        self.done = threading.Event()
        self.messages: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("killed", 50000),
            "server": ("testserver", 80),
            "headers": [
                (b"host", b"testserver"),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
            ],
        }
        self._task: asyncio.Task | None = None
        self._app = app
        threading.Thread(target=self._run, daemon=True).start()
        assert self.body_taken.wait(60), "the app never read the body"

    async def _receive(self) -> dict:
        if self._pieces:
            return {"type": "http.request", "body": self._pieces.pop(0), "more_body": True}
        self.body_taken.set()
        if self._disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Future()  # never resolved: the request hangs here
        raise AssertionError("unreachable")

    async def _send(self, message: dict) -> None:
        self.messages.append(message)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._app(self._scope, self._receive, self._send))
        try:
            self._loop.run_until_complete(self._task)
        except BaseException:  # noqa: BLE001 - cancelled, or the app raised: the client is gone anyway
            pass
        finally:
            self._loop.close()
            self.done.set()

    def cancel(self) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        assert self.done.wait(60), "the cancelled request did not end"


def fetch_digest(h: Harness, repo: str, digest: str) -> str:
    response = h.client.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 307, response.text
    return "sha256:" + hashlib.sha256(httpx.get(response.headers["Location"], timeout=30).content).hexdigest()


def lifecycle_gaps(h: Harness) -> list[str]:
    """What is in S3 but neither registered nor covered by the bucket's lifecycle rules
    (template.yaml: abandoned multipart uploads are aborted, tails expire), and whether
    upload sessions carry the attribute the table's TTL deletes them by."""
    s3, dynamodb = h.registry.clients.s3, h.registry.clients.dynamodb
    bucket, table = h.registry.settings.bucket, h.registry.settings.table
    rules = [
        r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] if r["Status"] == "Enabled"
    ]

    def prefix(rule: dict) -> str:
        return rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))

    aborts_all = any("AbortIncompleteMultipartUpload" in r and prefix(r) == "" for r in rules)
    expiring = [prefix(r) for r in rules if "Expiration" in r]
    items = [i for page in dynamodb.get_paginator("scan").paginate(TableName=table) for i in page["Items"]]
    registered = {i["s3_key"]["S"] for i in items if "s3_key" in i}
    gaps = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"] not in registered and not any(obj["Key"].startswith(p) for p in expiring):
                gaps.append(f"object {obj['Key']} is registered nowhere and never expires")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if uploads and not aborts_all:
        gaps.append(f"{len(uploads)} multipart uploads that no lifecycle rule aborts")
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    ttl_attribute = ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") == "ENABLED" else None
    ttl_limit = time.time() + h.registry.settings.upload_ttl_seconds + 5
    for item in items:
        if item[keys.PK]["S"].startswith("UPLOAD#"):
            expires = item.get(ttl_attribute or "", {}).get("N")
            if expires is None or not time.time() < int(expires) <= ttl_limit:
                gaps.append(f"upload session {item[keys.PK]['S']} does not expire by TTL ({ttl_attribute})")
    return gaps


CASES = {
    # (first chunk stored before, size of the killed request's body, bytes it sent before dying)
    "streamed-before-a-part": (0, 12 * MiB, 3 * MiB),
    "streamed-after-a-part": (0, 12 * MiB, 7 * MiB),
    "chunk-after-a-chunk": (4 * MiB, 4 * MiB, 2 * MiB),
    "chunk-after-a-chunk-after-a-part": (4 * MiB, 4 * MiB, 3 * MiB + 512 * 1024),
}


@pytest.mark.parametrize("how", ["disconnect", "cancel", "frozen"])
@pytest.mark.parametrize("case", list(CASES))
def test_request_killed_mid_upload(killing: Harness, case: str, how: str) -> None:
    h, repo = killing, f"faults/killed/{case}-{how}"
    stored, size, sent = CASES[case]
    data = os.urandom(stored + size)
    location = upload_path(h.client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"])
    if stored:
        response = h.client.patch(
            location, content=data[:stored], headers={"Content-Range": f"0-{stored - 1}"}
        )
        assert response.status_code == 202, response.text
    body = data[stored : stored + sent]
    pieces = [body[i : i + MiB] for i in range(0, len(body), MiB)]
    headers = (
        {"Content-Range": f"{stored}-{stored + size - 1}", "Content-Length": str(size)}
        if stored
        else {"Transfer-Encoding": "chunked"}
    )
    killed = KilledRequest(h.client.app, "PATCH", location, pieces, headers, disconnect=how == "disconnect")
    STATS.killed_requests += 1
    if how == "disconnect":
        assert killed.done.wait(60)
        answer = next((m["status"] for m in killed.messages if m["type"] == "http.response.start"), None)
        STATS.notes[f"a client gone mid-body was answered {answer} (to no one)"] += 1
    elif how == "cancel":
        killed.cancel()

    # Nothing of the killed request counts: the session is where the last good one left it.
    status = h.client.get(location)
    assert status.status_code == 204, status.text
    assert status.headers["Range"] == f"0-{max(stored - 1, 0)}"
    # Left alone, the session and what the request wrote expire.
    assert lifecycle_gaps(h) == []

    rest = data[stored:]
    resume = {"content": rest, "headers": {"Content-Range": f"{stored}-{len(data) - 1}"}}
    if how == "frozen":
        # The frozen request still holds the lease: the upload is busy until it expires.
        assert_error(h.client.patch(location, **resume), 409, "UPLOAD_BUSY")
        assert h.client.get(location).headers["Range"] == f"0-{max(stored - 1, 0)}"
        time.sleep(LEASE_SECONDS + 1.1)
    response = h.client.patch(location, **resume)
    assert response.status_code == 202, response.text
    response = h.client.put(f"{upload_path(response.headers['Location'])}?digest={sha256(data)}")
    assert response.status_code == 201, response.text
    assert fetch_digest(h, repo, sha256(data)) == sha256(data)
    if how == "frozen":
        # What the frozen request left is covered; then it wakes (as a request past its
        # lease may) and runs its error path: the committed blob must not suffer.
        assert lifecycle_gaps(h) == []
        killed.cancel()
        assert fetch_digest(h, repo, sha256(data)) == sha256(data)
