"""The direct-upload extension over HTTP (/v2/<name>/_skyport/uploads): what it hands
out, what it refuses, and what a wrong upload leaves behind (nothing)."""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from auth.conftest import basic, make_auth_settings
from harness import StorageView
from oci import assert_error
from skyport.direct_uploads import DIRECT_MIN_PART, MAX_PARTS, part_size_for
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

BASE = "/v2/team/app/_skyport/uploads"


@pytest.fixture
def api(registry: Registry):
    with TestClient(create_app(registry), follow_redirects=False) as client:
        yield client


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload_parts(api, upload: dict, data: bytes) -> None:
    numbers = list(range(1, upload["part_count"] + 1))
    urls = api.post(f"{BASE}/{upload['upload_id']}/parts", json={"parts": numbers}).json()["urls"]
    size = upload["part_size"]
    for number in numbers:
        chunk = data[(number - 1) * size : number * size]
        assert urllib3.request("PUT", urls[str(number)], body=chunk).status == 200


def _wait_verified(api, upload_id: str) -> None:
    deadline = time.monotonic() + 30
    while api.get(f"{BASE}/{upload_id}").status_code == 200:
        assert time.monotonic() < deadline, "still verifying"
        time.sleep(0.05)


def test_upload_verified_then_a_blob(api) -> None:
    data = os.urandom(DIRECT_MIN_PART + 1000)
    digest = _sha256(data)
    started = api.post(BASE, json={"digest": digest, "size": len(data)})
    assert started.status_code == 202
    upload = started.json()
    assert upload["state"] == "uploading" and upload["part_count"] == 2
    _upload_parts(api, upload, data)
    status = api.get(f"{BASE}/{upload['upload_id']}").json()
    assert [p["number"] for p in status["parts"]] == [1, 2]
    completed = api.post(f"{BASE}/{upload['upload_id']}/complete")
    assert completed.status_code == 202 and completed.json()["state"] == "verifying"
    _wait_verified(api, upload["upload_id"])
    head = api.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    # The registry has it now: a new start links it into another repository at once.
    again = api.post("/v2/other/app/_skyport/uploads", json={"digest": digest, "size": len(data)})
    assert again.status_code == 201 and again.json()["state"] == "exists"
    assert api.head(f"/v2/other/app/blobs/{digest}").status_code == 200


def test_a_known_digest_with_another_size_links_nothing(api) -> None:
    """A start naming a blob the registry holds, with a size it does not have, is not a
    mount: the blob stays out of the repository (the upload it gets will fail
    verification unless the bytes are the blob's)."""
    data = os.urandom(3000)
    digest = _sha256(data)
    upload = api.post(BASE, json={"digest": digest, "size": len(data)}).json()
    _upload_parts(api, upload, data)
    assert api.post(f"{BASE}/{upload['upload_id']}/complete").status_code == 202
    _wait_verified(api, upload["upload_id"])
    other = "/v2/other/app/_skyport/uploads"
    wrong = api.post(other, json={"digest": digest, "size": len(data) + 1})
    assert wrong.status_code == 202 and wrong.json()["state"] == "uploading"
    assert api.head(f"/v2/other/app/blobs/{digest}").status_code == 404
    assert api.delete(f"{other}/{wrong.json()['upload_id']}").status_code == 204


def test_wrong_digest_leaves_no_blob_object_or_session(api, registry: Registry) -> None:
    before = StorageView(registry).snapshot()
    data = os.urandom(3000)
    claimed = _sha256(b"something else")
    upload = api.post(BASE, json={"digest": claimed, "size": len(data)}).json()
    _upload_parts(api, upload, data)
    assert api.post(f"{BASE}/{upload['upload_id']}/complete").status_code == 202
    _wait_verified(api, upload["upload_id"])
    assert api.head(f"/v2/team/app/blobs/{claimed}").status_code == 404
    after = StorageView(registry).snapshot()
    assert after["objects"] == before["objects"] and after["multipart_uploads"] == before["multipart_uploads"]
    # Only the quota item the session was counted in remains, emptied.
    new_items = [item for item in after["items"] if item not in before["items"]]
    assert all(item["PK"]["S"].startswith("OPEN_UPLOADS#") for item in new_items)
    assert all(not item["open_uploads"]["M"] for item in new_items)


def test_wrong_size_is_refused_at_complete_and_the_upload_can_go_on(api) -> None:
    data = os.urandom(5000)
    upload = api.post(BASE, json={"digest": _sha256(data), "size": len(data)}).json()
    urls = api.post(f"{BASE}/{upload['upload_id']}/parts", json={"parts": [1]}).json()["urls"]
    assert urllib3.request("PUT", urls["1"], body=data[:100]).status == 200
    assert_error(api.post(f"{BASE}/{upload['upload_id']}/complete"), 400, "SIZE_INVALID")
    assert urllib3.request("PUT", urls["1"], body=data).status == 200  # the part again, whole
    assert api.post(f"{BASE}/{upload['upload_id']}/complete").status_code == 202
    _wait_verified(api, upload["upload_id"])
    assert api.head(f"/v2/team/app/blobs/{_sha256(data)}").status_code == 200


def test_missing_parts_are_named(api) -> None:
    size = 2 * DIRECT_MIN_PART + 1
    upload = api.post(BASE, json={"digest": _sha256(b"x"), "size": size}).json()
    body = assert_error(api.post(f"{BASE}/{upload['upload_id']}/complete"), 400, "BLOB_UPLOAD_INVALID")
    assert body["detail"]["missing_parts"] == [1, 2, 3]


def test_part_urls_name_this_upload_only_and_expire_in_minutes(api, registry: Registry) -> None:
    # moto checks neither the signature nor the expiry of a presigned URL (without its IAM
    # mode), so what S3 would enforce is checked in the URL: the key, the multipart upload
    # and the part number are in the signed query, and X-Amz-Expires is minutes.
    upload = api.post(BASE, json={"digest": _sha256(b"x"), "size": 3 * DIRECT_MIN_PART}).json()
    answer = api.post(f"{BASE}/{upload['upload_id']}/parts", json={"parts": [2]}).json()
    assert answer["expires_in"] == registry.settings.direct_url_seconds == 900
    url = urlsplit(answer["urls"]["2"])
    query = parse_qs(url.query)
    session = registry.uploads.status("team/app", upload["upload_id"])
    assert url.path == f"/{registry.settings.bucket}/{session.blob_key}"
    assert query["uploadId"] == [session.multipart_id] and query["partNumber"] == ["2"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    # Part numbers outside the upload, or not numbers, are refused.
    for bad in ([0], [4], ["1"], [True], []):
        assert_error(
            api.post(f"{BASE}/{upload['upload_id']}/parts", json={"parts": bad}), 400, "BLOB_UPLOAD_INVALID"
        )


@pytest.mark.parametrize(
    "body, code",
    [
        ({"digest": "sha256:abc", "size": 1}, "DIGEST_INVALID"),
        ({"digest": "sha512:" + "a" * 128, "size": 1}, "BLOB_UPLOAD_INVALID"),
        ({"digest": "sha256:" + "a" * 64, "size": -1}, "SIZE_INVALID"),
        ({"digest": "sha256:" + "a" * 64, "size": "12"}, "SIZE_INVALID"),
        ({"digest": "sha256:" + "a" * 64, "size": 10**20}, "SIZE_INVALID"),
        ({"digest": "sha256:" + "a" * 64}, "SIZE_INVALID"),
    ],
)
def test_bad_start_requests_store_nothing(api, registry: Registry, body, code) -> None:
    before = StorageView(registry).snapshot()
    assert_error(api.post(BASE, json=body), 400, code)
    assert StorageView(registry).snapshot() == before


def test_malformed_bodies_are_oci_errors(api) -> None:
    assert_error(api.post(BASE, content=b"{not json"), 400, "BLOB_UPLOAD_INVALID")
    assert_error(api.post(BASE, content=b"[1]"), 400, "BLOB_UPLOAD_INVALID")
    assert_error(api.post(BASE, content=b"[" * 100_000), 413, "PAYLOAD_TOO_LARGE")
    assert_error(api.get(f"{BASE}/no-such-upload"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_direct_session_is_busy_to_the_chunked_routes(api) -> None:
    upload = api.post(BASE, json={"digest": _sha256(b"x"), "size": 1}).json()
    location = f"/v2/team/app/blobs/uploads/{upload['upload_id']}"
    assert_error(api.patch(location, content=b"x"), 409, "UPLOAD_BUSY")
    assert_error(api.put(f"{location}?digest={_sha256(b'x')}", content=b"x"), 409, "UPLOAD_BUSY")
    # and only its own repository knows it
    assert_error(api.get(f"/v2/other/app/_skyport/uploads/{upload['upload_id']}"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_abort_removes_session_and_multipart_upload(api, registry: Registry) -> None:
    before = StorageView(registry).snapshot()
    upload = api.post(BASE, json={"digest": _sha256(b"x"), "size": 1}).json()
    assert api.delete(f"{BASE}/{upload['upload_id']}").status_code == 204
    after = StorageView(registry).snapshot()
    assert after["multipart_uploads"] == before["multipart_uploads"] and after["objects"] == before["objects"]
    assert_error(api.delete(f"{BASE}/{upload['upload_id']}"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_part_size_fits_five_tib_in_ten_thousand_parts() -> None:
    assert part_size_for(1) == DIRECT_MIN_PART
    five_tib = 5 * 1024**4
    assert -(-five_tib // part_size_for(five_tib)) <= MAX_PARTS
    assert part_size_for(five_tib) <= 5 * 1024**3


def test_auth_scopes_pull_only_robot_gets_no_part_urls(moto_endpoint, aws_clients, template) -> None:
    registry = Registry(make_auth_settings(moto_endpoint, aws_clients, template), clients=aws_clients)
    admin = registry.identities
    admin.add_user("root", "root-password-1", admin=True)
    reader, reader_secret = admin.add_robot("reader")
    pusher, pusher_secret = admin.add_robot("pusher")
    admin.grant("team/*", reader.name, ["pull"])
    admin.grant("team/*", pusher.name, ["push"])
    body = {"digest": _sha256(b"x"), "size": 1}
    with TestClient(create_app(registry), follow_redirects=False) as client:

        def token(name: str, secret: str) -> dict[str, str]:
            answer = client.get(
                "/auth/token?service=skyport&scope=repository:team/app:pull,push", headers=basic(name, secret)
            )
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        assert_error(client.post(BASE, json=body), 401, "UNAUTHORIZED")
        assert_error(client.post(BASE, json=body, headers=token(reader.name, reader_secret)), 403, "DENIED")
        as_pusher = token(pusher.name, pusher_secret)
        upload = client.post(BASE, json=body, headers=as_pusher)
        assert upload.status_code == 202
        upload_id = upload.json()["upload_id"]
        parts = f"{BASE}/{upload_id}/parts"
        assert client.post(parts, json={"parts": [1]}, headers=as_pusher).status_code == 200
        assert_error(
            client.post(parts, json={"parts": [1]}, headers=token(reader.name, reader_secret)), 403, "DENIED"
        )
        # Another pusher's session is unknown to the admin too (sessions are their owner's).
        as_root = token("root", "root-password-1")
        assert_error(client.post(parts, json={"parts": [1]}, headers=as_root), 404, "BLOB_UPLOAD_UNKNOWN")
