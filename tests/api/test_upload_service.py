"""The upload service and its capability (issue 10): the API (Lambda, behind the local API
Gateway) answers a started upload with a Location on the upload host, and the upload
service takes the bytes, authorized only by the capability in that Location.

Refusals are 401 UNAUTHORIZED without a Bearer challenge (a registry token is of no use
on the upload host), or 404 BLOB_UPLOAD_UNKNOWN for a session that is over; none stores
anything, and no capability ever reaches a log line or an error's detail."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from harness import API_HOST, UPLOAD_HOST, StorageView, api_behind_lambda
from oci import MiB, assert_error, fetch, path_of, sha256, with_digest
from skyport.auth.capabilities import Capabilities, CapabilityKeys
from skyport.config import Settings
from skyport.registry import Registry
from starlette.testclient import TestClient

USER, PASSWORD = "pusher", "pusher-password-1"
REPO = "team/app"


@dataclass
class Topology:
    client: TestClient  # routes by Host: API_HOST is the API, UPLOAD_HOST the upload service
    registry: Registry
    key: str  # the capability key both sides share
    auth: bool

    @property
    def credentials(self) -> dict[str, str]:
        if not self.auth:
            return {}
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

    def start(self, repository: str = REPO) -> str:
        response = self.client.post(f"/v2/{repository}/blobs/uploads/", headers=self.credentials)
        assert response.status_code == 202, response.text
        return response.headers["Location"]

    def capabilities(self, clock=time.time) -> Capabilities:
        return Capabilities(lambda: CapabilityKeys.from_value(self.key), self.auth, clock=clock)


@pytest.fixture(params=["auth-off", "auth-on"])
def topology(request, settings: Settings, aws_clients, template) -> Iterator[Topology]:
    from dataclasses import replace

    auth = request.param == "auth-on"
    registry = Registry(replace(settings, auth="on" if auth else "off"), clients=aws_clients)
    if auth:
        registry.identities.add_user(USER, PASSWORD)
        registry.identities.grant("team/*", USER, ["push", "pull"])
    key = secrets.token_urlsafe(32)
    app = api_behind_lambda(registry, template, with_upload_service=True, upload_key=key)
    with TestClient(app, follow_redirects=False) as client:
        yield Topology(client, registry, key, auth)


def capability_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["_capability"][0]


def with_capability(location: str, capability: str | None) -> str:
    """``location`` with its capability replaced (None: removed)."""
    parts = urlsplit(location)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return base if capability is None else f"{base}?_capability={capability}"


def upload_id_of(location: str) -> str:
    return urlsplit(location).path.rsplit("/", 1)[1]


# --- the happy path --------------------------------------------------------------------------


def test_a_push_goes_to_the_upload_host_and_every_location_keeps_the_capability(topology):
    location = topology.start()
    parts = urlsplit(location)
    assert parts.netloc == UPLOAD_HOST and parts.path.startswith(f"/v2/{REPO}/blobs/uploads/")
    capability = capability_of(location)
    # Bigger than any Lambda event: only the upload service can take it in one request.
    data = os.urandom(12 * MiB + 3)
    response = topology.client.patch(
        location, content=iter([data[i : i + MiB] for i in range(0, len(data), MiB)])
    )
    assert response.status_code == 202, response.text
    assert capability_of(response.headers["Location"]) == capability
    assert path_of(response.headers["Location"]).startswith(parts.path)
    status = topology.client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(data) - 1}"
    assert capability_of(status.headers["Location"]) == capability
    done = topology.client.put(with_digest(location, sha256(data)))
    assert done.status_code == 201, done.text
    # The blob lives on the registry's host (SKYPORT_REGISTRY_URL), not the upload host's.
    assert done.headers["Location"] == f"http://{API_HOST}/v2/{REPO}/blobs/{sha256(data)}"
    assert done.headers["Docker-Content-Digest"] == sha256(data)
    head = topology.client.head(f"/v2/{REPO}/blobs/{sha256(data)}", headers=topology.credentials)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    redirect = topology.client.get(f"/v2/{REPO}/blobs/{sha256(data)}", headers=topology.credentials)
    assert fetch(redirect.headers["Location"]) == data


def test_a_416_on_the_upload_host_keeps_the_capability(topology):
    location = topology.start()
    response = topology.client.patch(location, content=b"abc", headers={"Content-Range": "5-7"})
    assert_error(response, 416, "RANGE_INVALID")
    assert response.headers["Range"] == "0-0"
    assert capability_of(response.headers["Location"]) == capability_of(location)
    response = topology.client.patch(location, content=b"abc", headers={"Content-Range": "x"})
    assert_error(response, 416, "RANGE_INVALID")
    assert capability_of(response.headers["Location"]) == capability_of(location)


def test_the_authorization_header_is_ignored_on_the_upload_host(topology):
    location = topology.start()
    for header in ("Bearer forged.token.value", "Basic bm9ib2R5Om5vdGhpbmc=", "garbage"):
        response = topology.client.patch(location, content=b"x", headers={"Authorization": header})
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
    # The registry's own credentials do not open an upload without its capability.
    stripped = f"http://{UPLOAD_HOST}{path_of(location).split('?')[0]}"
    response = topology.client.get(stripped, headers=topology.credentials)
    assert_error(response, 401, "UNAUTHORIZED")
    assert "WWW-Authenticate" not in response.headers


def test_health_check_and_nothing_else(topology):
    health = topology.client.get(f"http://{UPLOAD_HOST}/healthz")
    assert health.status_code == 200
    for method, path, status, code in [
        ("GET", "/v2/", 404, "NOT_FOUND"),
        ("GET", "/v2/_catalog", 404, "NOT_FOUND"),
        ("POST", f"/v2/{REPO}/blobs/uploads/", 404, "NOT_FOUND"),
        ("GET", f"/v2/{REPO}/manifests/latest", 404, "NOT_FOUND"),
        ("PUT", f"/v2/{REPO}/manifests/latest", 404, "NOT_FOUND"),
        ("GET", f"/v2/{REPO}/blobs/{sha256(b'x')}", 404, "NOT_FOUND"),
        ("POST", f"/v2/{REPO}/blobs/uploads/some-id", 405, "UNSUPPORTED"),
    ]:
        response = topology.client.request(method, f"http://{UPLOAD_HOST}{path}")
        assert_error(response, status, code)


# --- refusals ---------------------------------------------------------------------------------


def _tampered(capability: str, field: int, change) -> str:
    fields = capability.split(".")
    fields[field] = change(fields[field])
    return ".".join(fields)


def _flip(text: str) -> str:
    """One character changed, in the middle (base64url and digits stay in their alphabet)."""
    i = len(text) // 2
    alphabet = "0123456789" if text.isdigit() else "abcdef0123456789" if len(text) == 16 else "AB"
    replacement = next(c for c in alphabet if c != text[i : i + 1])
    return text[:i] + replacement + text[i + 1 :]


# (name, how to make the capability from a genuine one)
FORGERIES = {
    "missing": lambda c: None,
    "empty": lambda c: "",
    "version": lambda c: "2" + c[1:],
    "key-id": lambda c: _tampered(c, 1, _flip),
    "expiry-later": lambda c: _tampered(c, 2, lambda e: str(int(e) + 3600)),
    "expiry-earlier": lambda c: _tampered(c, 2, lambda e: str(int(e) - 1)),
    "owner": lambda c: _tampered(c, 3, lambda o: "YWRtaW4"),  # "admin"
    "mac-flipped": lambda c: _tampered(c, 4, _flip),
    "mac-truncated": lambda c: c[:-1],
    "mac-missing": lambda c: c.rsplit(".", 1)[0],
    "extended": lambda c: c + "A",
    "extra-field": lambda c: c + ".AAAA",
    "unicode-digits-in-expiry": lambda c: _tampered(c, 2, lambda e: "\uff11" + e[1:]),
    "oversized": lambda c: c + "A" * 6000,
    "percent-encoded-garbage": lambda c: "%00%ff" + c,
}


@pytest.mark.parametrize("forge", [pytest.param(f, id=name) for name, f in FORGERIES.items()])
def test_forged_capabilities_are_refused_and_store_nothing(topology, forge, caplog):
    caplog.set_level(logging.DEBUG)
    location = topology.start()
    assert topology.client.patch(location, content=b"first").status_code == 202
    storage = StorageView(topology.registry)
    before = storage.snapshot()
    forged = forge(capability_of(location))
    target = with_capability(location, forged)
    for method, body in (("PATCH", b"evil"), ("PUT", b"evil"), ("GET", b""), ("DELETE", b"")):
        url = with_digest(target, sha256(b"firstevil")) if method == "PUT" else target
        response = topology.client.request(method, url, content=body)
        error = assert_error(response, 401, "UNAUTHORIZED")
        assert "WWW-Authenticate" not in response.headers
        if forged:
            assert forged[:40] not in json.dumps(error)
    assert storage.snapshot() == before
    # The genuine capability still works: the upload is as it was.
    status = topology.client.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-4"


def test_a_capability_for_another_upload_or_repository_is_refused(topology):
    first, second = topology.start(), topology.start()
    other_repo = topology.start("team/other")
    storage = StorageView(topology.registry)
    before = storage.snapshot()
    # The second upload's capability on the first upload's URL.
    response = topology.client.patch(with_capability(first, capability_of(second)), content=b"x")
    assert_error(response, 401, "UNAUTHORIZED")
    # The first upload's capability on its id under another repository.
    moved = first.replace(f"/v2/{REPO}/", "/v2/team/other/")
    response = topology.client.patch(moved, content=b"x")
    assert_error(response, 401, "UNAUTHORIZED")
    # Another repository's capability on this repository's upload.
    response = topology.client.get(with_capability(first, capability_of(other_repo)))
    assert_error(response, 401, "UNAUTHORIZED")
    assert storage.snapshot() == before


def test_an_expired_capability_is_refused(topology):
    location = topology.start()
    upload_id = upload_id_of(location)
    session = topology.registry.uploads.status(REPO, upload_id, USER if topology.auth else None)
    owner = USER if topology.auth else None
    # Minted as the API would, but expiring a second ago (the session itself still runs).
    expired = topology.capabilities().mint(REPO, upload_id, owner, int(time.time()) - 1)
    still_valid = topology.capabilities().mint(REPO, upload_id, owner, session.expires_at)
    storage = StorageView(topology.registry)
    before = storage.snapshot()
    response = topology.client.patch(with_capability(location, expired), content=b"x")
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error["detail"] == {"reason": "expired"}
    assert storage.snapshot() == before
    assert topology.client.patch(with_capability(location, still_valid), content=b"x").status_code == 202


def test_a_capability_from_another_key_is_refused(topology):
    location = topology.start()
    other = Capabilities(lambda: CapabilityKeys.from_value(secrets.token_urlsafe(32)), topology.auth)
    owner = USER if topology.auth else None
    forged = other.mint(REPO, upload_id_of(location), owner, int(time.time()) + 3600)
    assert_error(topology.client.get(with_capability(location, forged)), 401, "UNAUTHORIZED")


def test_a_capability_is_over_with_its_upload(topology):
    location = topology.start()
    done = topology.client.put(with_digest(location, sha256(b"blob")), content=b"blob")
    assert done.status_code == 201
    storage = StorageView(topology.registry)
    before = storage.snapshot()
    for method, body in (("PATCH", b"again"), ("PUT", b"again"), ("GET", b""), ("DELETE", b"")):
        url = with_digest(location, sha256(b"blobagain")) if method == "PUT" else location
        assert_error(topology.client.request(method, url, content=body), 404, "BLOB_UPLOAD_UNKNOWN")
    assert storage.snapshot() == before
    cancelled = topology.start()
    assert topology.client.delete(cancelled).status_code == 204
    assert_error(topology.client.patch(cancelled, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_capabilities_never_reach_the_logs(topology, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    location = topology.start()
    capability = capability_of(location)
    topology.client.patch(location, content=b"abc")
    topology.client.patch(location, content=b"abc", headers={"Content-Range": "9-11"})  # a 416
    topology.client.get(with_capability(location, capability[:-2] + "AA"))  # a refusal
    topology.client.put(with_digest(location, sha256(b"abc")))
    captured = capsys.readouterr()  # the Lambda adapter's JSON log lines go to stdout
    mac = capability.rsplit(".", 1)[1]
    # Ours: every logger but the test client's own (httpx logs the URLs it requests).
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    for text in (ours, captured.out, captured.err):
        assert mac not in text and mac[:-2] not in text


def test_settings_keep_the_key_out_of_repr():
    settings = Settings.from_env(
        {
            "SKYPORT_BUCKET": "b",
            "SKYPORT_TABLE": "t",
            "SKYPORT_UPLOAD_ENDPOINT": "https://uploads.example.net/",
            "SKYPORT_UPLOAD_KEY": "k" * 40,
        }
    )
    assert settings.upload_endpoint == "https://uploads.example.net"
    assert "k" * 40 not in repr(settings)


# --- keys -------------------------------------------------------------------------------------


@pytest.fixture
def secretsmanager(moto_endpoint, monkeypatch):
    """Secrets Manager on the moto server (as AWS_ENDPOINT_URL_SECRETS_MANAGER points it)."""
    from skyport.storage.clients import AwsClients

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    return AwsClients(
        Settings(bucket="-", table="-", s3_endpoint=moto_endpoint, dynamodb_endpoint=moto_endpoint)
    )


def test_keys_from_secrets_manager_survive_a_rotation(secretsmanager):
    from skyport.auth.capabilities import capability_keys

    client = secretsmanager.secretsmanager
    name = f"skyport-upload-key-{secrets.token_hex(4)}"
    client.create_secret(Name=name, SecretString="a" * 64)
    settings = Settings(bucket="-", table="-", upload_key_secret=name)
    before = Capabilities(capability_keys(settings, secretsmanager), auth_enabled=False)
    minted = before.mint(REPO, "upload-1", None, int(time.time()) + 600)
    client.put_secret_value(SecretId=name, SecretString="b" * 64)  # the rotation
    after = Capabilities(capability_keys(settings, secretsmanager), auth_enabled=False)  # a cold task
    assert after.verify(minted, REPO, "upload-1").upload_id == "upload-1"  # AWSPREVIOUS verifies
    assert after.mint(REPO, "upload-1", None, 1) != before.mint(REPO, "upload-1", None, 1)


def test_keys_rotate_by_hand_with_current_and_previous():
    old, new = "o" * 40, "n" * 40
    minted = Capabilities(lambda: CapabilityKeys.from_value(old), False).mint(REPO, "u", None, 2**33)
    rotated = Capabilities(
        lambda: CapabilityKeys.from_value(json.dumps({"current": new, "previous": old})), False
    )
    assert rotated.verify(minted, REPO, "u").repository == REPO
    retired = Capabilities(lambda: CapabilityKeys.from_value(new), False)
    with pytest.raises(Exception, match="does not authorize"):
        retired.verify(minted, REPO, "u")


def test_short_keys_and_bad_endpoints_are_refused_at_start():
    with pytest.raises(ValueError, match="at least"):
        CapabilityKeys.from_value("short")
    base = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}
    with pytest.raises(ValueError, match="SKYPORT_UPLOAD_KEY"):
        Settings.from_env({**base, "SKYPORT_UPLOAD_ENDPOINT": "https://uploads.example.net"})
    for bad in ("uploads.example.net", "https://uploads.example.net/path", "ftp://x", "https://x?q=1"):
        with pytest.raises(ValueError, match="base URL"):
            Settings.from_env({**base, "SKYPORT_UPLOAD_ENDPOINT": bad, "SKYPORT_UPLOAD_KEY": "k" * 40})
    with pytest.raises(ValueError, match="SKYPORT_REGISTRY_URL"):
        Settings.from_env({**base, "SKYPORT_REGISTRY_URL": "registry.example.net"})


# --- what the ECS task role must grant --------------------------------------------------------


class AwsCalls:
    """Every S3 and DynamoDB operation made while recording (botocore's before-parameter-build
    event on the real clients), with the S3 keys and DynamoDB partition keys each one names."""

    def __init__(self) -> None:
        self.operations: set[tuple[str, str]] = set()
        self.s3_keys: set[str] = set()
        self.partitions: set[str] = set()

    def __call__(self, params, model, **_) -> None:
        service = model.service_model.service_name
        self.operations.add((service, model.name))
        if service == "s3" and "Key" in params:
            self.s3_keys.add(params["Key"])
        for item in [params, *[next(iter(t.values())) for t in params.get("TransactItems", [])]]:
            key = item.get("Key") or item.get("Item") or {}
            if "PK" in key:
                self.partitions.add(key["PK"]["S"].split("#", 1)[0])


def test_the_upload_service_calls_exactly_what_its_task_role_grants(topology):
    """upload_service.AWS_CALLS lists the task role's grants (template.yaml, part B, builds
    the role from it): every call the upload service makes is in it, on the blobs/ and
    uploads/ prefixes and the UPLOAD, BLOB and LINK items only."""
    from skyport_api.upload_service import AWS_CALLS, DYNAMODB_ITEMS, S3_PREFIXES

    calls = AwsCalls()
    clients = topology.registry.clients
    started = [topology.start() for _ in range(3)]
    for client in (clients.s3, clients.dynamodb):
        client.meta.events.register("before-parameter-build", calls)
    try:
        big, small = os.urandom(13 * MiB), os.urandom(1000)
        streamed = topology.client.patch(started[0], content=iter([big[: 7 * MiB], big[7 * MiB :]]))
        assert streamed.status_code == 202
        chunk = topology.client.patch(
            started[0], content=small, headers={"Content-Range": f"{len(big)}-{len(big) + 999}"}
        )
        assert chunk.status_code == 202  # a tail object
        assert topology.client.get(started[0]).status_code == 204
        assert_error(topology.client.put(with_digest(started[0], sha256(b"wrong"))), 400, "DIGEST_INVALID")
        assert topology.client.put(with_digest(started[0], sha256(big + small))).status_code == 201
        # The same blob again (already registered), and a cancelled upload with a part and a tail.
        assert topology.client.put(with_digest(started[1], sha256(small)), content=small).status_code == 201
        assert (
            topology.client.patch(
                started[2], content=big[: 6 * MiB], headers={"Content-Range": f"0-{6 * MiB - 1}"}
            ).status_code
            == 202
        )
        assert topology.client.delete(started[2]).status_code == 204
    finally:
        for client in (clients.s3, clients.dynamodb):
            client.meta.events.unregister("before-parameter-build", calls)
    granted = {(service, operation) for service, operations in AWS_CALLS.items() for operation in operations}
    assert calls.operations - granted == set(), "the upload service calls what its role does not grant"
    assert all(key.startswith(S3_PREFIXES) for key in calls.s3_keys), calls.s3_keys
    assert calls.partitions <= set(DYNAMODB_ITEMS), calls.partitions
    # And the list is not padded: what a push, a failed PUT and a cancel call is most of it.
    assert len(granted - calls.operations) <= 2, granted - calls.operations  # GetObject, CopyObject
