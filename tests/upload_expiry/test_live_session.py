"""Nothing belonging to a live session is ever touched: sweeps run back to back (grace 0:
every leftover no session names is fair game) while a client pushes a layer slowly in
chunks (multipart parts, tail objects, a fold); the upload then completes, its image is
pushed and pulls byte for byte. An abandoned, expired session goes meanwhile."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

from oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, MiB, descriptor, fetch, push_blob, sha256

from .conftest import REPO, abandon, patch, session_item, start, upload_id_of, wait_until_expired


def test_sweeps_never_touch_a_live_session_which_then_completes_and_pulls(
    registry, sweeper, app_client, short_client
):
    abandoned, _ = abandon(short_client)
    wait_until_expired()
    layer = os.urandom(13 * MiB)
    chunks = [(0, 6 * MiB), (6 * MiB, 7 * MiB), (7 * MiB, 11 * MiB), (11 * MiB, 12 * MiB)]  # then the PUT's

    stop, sweeps, removed, failures = threading.Event(), [], [], []

    def sweep_forever() -> None:
        try:
            while not stop.is_set():
                report = sweeper.upload_expiry.sweep(grace_seconds=0)
                sweeps.append(report)
                removed.extend(report.removed)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)

    sweeping = threading.Thread(target=sweep_forever, daemon=True)
    sweeping.start()
    try:
        location = start(app_client)
        upload_id = upload_id_of(location)
        for first, end in chunks:
            location = patch(app_client, location, layer[first:end], first)
            time.sleep(0.4)  # a slow client: sweeps run between its chunks, and during them
        separator = "&" if "?" in location else "?"
        finished = app_client.put(
            f"{location}{separator}digest={sha256(layer)}",
            content=layer[12 * MiB :],
            headers={
                "Content-Range": f"{12 * MiB}-{len(layer) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert finished.status_code == 201, finished.text
    finally:
        stop.set()
        sweeping.join(timeout=60)
    assert not failures, failures
    assert len(sweeps) >= 5, len(sweeps)
    assert all(r.errors == 0 for r in sweeps), [r.error_messages for r in sweeps if r.errors]
    # The abandoned session went; nothing of the live one did.
    assert ("session", abandoned) in {(r.kind, r.name) for r in removed}
    # Of the live upload, at most the tail its closing PUT put into the blob (UploadPartCopy)
    # may go: the PUT removes the session, then that tail, and with grace 0 a sweep may take
    # the tail in between. Nothing while the session was stored. (With the default grace,
    # the upload TTL, not even that: the tail is minutes old.)
    last_tail = f"uploads/{upload_id}/tail-{12 * MiB}-"
    assert all(
        r.kind == "tail_object" and r.name.startswith(last_tail) for r in removed if upload_id in r.name
    ), removed
    assert session_item(registry, upload_id) is None  # finished: the PUT removed it

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    push_blob(app_client, REPO, config, mode="post")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer)],
        }
    ).encode()
    pushed = app_client.put(
        f"/v2/{REPO}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert pushed.status_code == 201, pushed.text
    assert app_client.get(f"/v2/{REPO}/manifests/v1").content == manifest
    redirect = app_client.get(f"/v2/{REPO}/blobs/{sha256(layer)}")
    assert redirect.status_code == 307
    assert hashlib.sha256(fetch(redirect.headers["Location"])).hexdigest() == sha256(layer).split(":")[1]
