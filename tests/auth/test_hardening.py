"""Auth under hostile input (issue 9): invalid names, malformed tokens and challenge
injection answer 4xx, never 5xx; a mount's challenge asks for pull on its source."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from oci import assert_error
from skyport.auth import tokens
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import basic, bearer

ADMIN = ("root", "root-password-1")
BAD_NAMES = ("Bad/Name", "a..b", 'x"realm="evil', "x%0Drealm", "-lead", "a" * 300)


@pytest.fixture
def admin(auth_registry):
    auth_registry.identities.add_user(*ADMIN, admin=True)
    return basic(*ADMIN)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_an_invalid_name_is_name_invalid_to_everyone(auth_client, admin, name):
    for headers in ({}, admin):
        for method, path in (
            ("GET", f"/v2/{name}/tags/list"),
            ("GET", f"/v2/{name}/manifests/latest"),
            ("HEAD", f"/v2/{name}/manifests/latest"),
            ("POST", f"/v2/{name}/blobs/uploads/"),
            ("DELETE", f"/v2/{name}/manifests/latest"),
        ):
            response = auth_client.request(method, path, headers=headers)
            assert_error(response, 400, "NAME_INVALID")
            assert "WWW-Authenticate" not in response.headers


def _token_with_signature(auth_registry, signature: str) -> str:
    ring = auth_registry.auth.keys.load()
    head, payload, _ = tokens.encode({"sub": "x"}, ring.current).split(".")
    return f"{head}.{payload}.{signature}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_malformed_tokens_are_401_never_500(auth_registry, auth_client):
    ring = auth_registry.auth.keys.load()
    header = _b64(json.dumps({"alg": "HS256", "kid": ring.current.kid}).encode())
    nested = _b64(b"[" * 10_000)
    malformed = [
        _token_with_signature(auth_registry, "A"),
        _token_with_signature(auth_registry, "AAAAA"),
        _token_with_signature(auth_registry, "AAAA="),
        _token_with_signature(auth_registry, "é"),
        f"A.{header}.AAAA",
        f"AAAAA.{_b64(b'{}')}.AAAA",
        f"{_b64(b'[1]')}.{_b64(b'{}')}.AAAA",
        f"{_b64(b'not json')}.{_b64(b'{}')}.AAAA",
        f"{_b64(bytes([0xFF, 0xFE]))}.{_b64(b'{}')}.AAAA",
        f"{nested}.{_b64(b'{}')}.AAAA",
        f"{header}.{nested}.AAAA",
        f"{header}.é.AAAA",
        "x" * 100_000,
        "a.b.c.d",
    ]
    for token in malformed:
        for path in ("/v2/", "/v2/team/app/tags/list"):
            # Sent as bytes: non-ASCII reaches the server as Latin-1, as on the wire.
            headers = {"Authorization": f"Bearer {token}".encode("latin-1")}
            response = auth_client.get(path, headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")
    # A signature that decodes but is wrong is refused the same way.
    forged = _token_with_signature(auth_registry, _b64(hashlib.sha256(b"x").digest()))
    assert_error(auth_client.get("/v2/", headers=bearer(forged)), 401, "UNAUTHORIZED")


def _params(challenge: str) -> list[tuple[str, str]]:
    assert challenge.startswith("Bearer ")
    rest = challenge[len("Bearer ") :]
    pairs = re.findall(r'([a-z]+)="((?:[^"\\]|\\.)*)"(?:,|$)', rest)
    # The whole header is those pairs and nothing else.
    assert ",".join(f'{k}="{v}"' for k, v in pairs) == rest, challenge
    return pairs


def test_the_challenge_is_one_realm_whatever_the_request(auth_client):
    for headers in ({}, {"Host": 'evil"realm="x'}):
        response = auth_client.get("/v2/team/app/tags/list", headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        keys = [k for k, _ in _params(response.headers["WWW-Authenticate"])]
        assert keys == ["realm", "service", "scope"]


def _push_blob(client, name: str, headers: dict, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = client.post(
        f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data, headers=headers
    )
    assert response.status_code == 201, response.text
    return digest


def test_a_mount_challenge_asks_for_pull_on_the_source(auth_registry, auth_client, admin):
    ids = auth_registry.identities
    ids.add_user("carol", "carol-password-1")
    ids.grant("src/*", "carol", ["pull"])
    ids.grant("dst/*", "carol", ["push"])
    digest = _push_blob(auth_client, "src/app", admin, b"shared layer")
    url = "/v2/dst/app/blobs/uploads/"
    params = {"mount": digest, "from": "src/app"}

    challenge = auth_client.post(url, params=params)
    assert_error(challenge, 401, "UNAUTHORIZED")
    scope = dict(_params(challenge.headers["WWW-Authenticate"]))["scope"]
    assert scope.split(" ") == ["repository:dst/app:pull,push", "repository:src/app:pull"]

    token = auth_client.get(
        "/auth/token", params={"scope": scope}, headers=basic("carol", "carol-password-1")
    ).json()["token"]
    mounted = auth_client.post(url, params=params, headers=bearer(token))
    assert mounted.status_code == 201, mounted.text
    assert mounted.headers["Docker-Content-Digest"] == digest

    # An invalid source does not enter the scope; the mount degrades to an upload.
    bad = auth_client.post(url, params={"mount": digest, "from": 'x"y'})
    scope = dict(_params(bad.headers["WWW-Authenticate"]))["scope"]
    assert scope == "repository:dst/app:pull,push"


@pytest.mark.parametrize("kind", ["user", "robot"])
def test_a_recreated_identity_never_honours_old_refresh_tokens(auth_registry, auth_client, kind):
    ids = auth_registry.identities
    if kind == "user":
        name, secret = "dave", "dave-password-1"
        ids.add_user(name, secret)
    else:
        robot, secret = ids.add_robot("ci-d")
        name = robot.name
    login = dict(grant_type="password", username=name, password=secret, access_type="offline")
    old = auth_client.post("/auth/token", data=login).json()["refresh_token"]
    refresh = {"grant_type": "refresh_token", "refresh_token": old}
    assert auth_client.post("/auth/token", data=refresh).status_code == 200

    ids.delete(name)
    if kind == "user":
        ids.add_user(name, secret)  # same name, same password, generation starts over
    else:
        ids.add_robot("ci-d")
    assert_error(auth_client.post("/auth/token", data=refresh), 401, "UNAUTHORIZED")


def test_lockout_is_per_source_address_and_never_for_robots(auth_registry, auth_client):
    ids = auth_registry.identities
    ids.add_user("erin", "erin-password-1")
    robot, secret = ids.add_robot("ci-e")
    threshold = auth_registry.settings.lockout_threshold
    for attempt in range(threshold + 3):
        # Robots keep answering 401 however often they fail: a secret is never locked.
        names = ("erin", robot.name) if attempt < threshold else (robot.name,)
        for name in names:
            response = auth_client.get("/auth/token", headers=basic(name, "wrong-password-0"))
            assert_error(response, 401, "UNAUTHORIZED")
    # The attacker's address is locked out for erin...
    locked = auth_client.get("/auth/token", headers=basic("erin", "erin-password-1"))
    assert_error(locked, 429, "TOOMANYREQUESTS")
    # ...a robot is not, and erin from her own address is not either. X-Forwarded-For
    # is the client's to write, so it does not change the address.
    assert auth_client.get("/auth/token", headers=basic(robot.name, secret)).status_code == 200
    spoofed = {**basic("erin", "erin-password-1"), "X-Forwarded-For": "192.0.2.7"}
    assert_error(auth_client.get("/auth/token", headers=spoofed), 429, "TOOMANYREQUESTS")
    with TestClient(create_app(auth_registry), client=("192.0.2.7", 40000)) as elsewhere:
        response = elsewhere.get("/auth/token", headers=basic("erin", "erin-password-1"))
        assert response.status_code == 200, response.text


def test_an_in_memory_signing_key_never_reaches_the_table(moto_endpoint, aws_clients, template):
    # What `skyport serve` sets: the table (an embedded moto, open on loopback) never
    # holds the key, and every registry of the process verifies the same tokens.
    from skyport.registry import Registry

    from .conftest import make_auth_settings

    settings = make_auth_settings(moto_endpoint, aws_clients, template, signing_key_in_memory=True)
    first, second = (Registry(settings, clients=aws_clients) for _ in range(2))
    first.identities.add_user("frank", "frank-password-1")
    with TestClient(create_app(first)) as one, TestClient(create_app(second)) as two:
        token = one.get("/auth/token", headers=basic("frank", "frank-password-1")).json()["token"]
        assert two.get("/v2/", headers=bearer(token)).status_code == 200
    assert first.auth._store.get_signing_keys() is None
    # Without it (a stack of its own, not `serve`), the table keeps the key.
    table_registry = Registry(make_auth_settings(moto_endpoint, aws_clients, template), clients=aws_clients)
    table_registry.auth.keys.load()
    assert table_registry.auth._store.get_signing_keys() is not None
