"""Users and robots: logins through the token endpoint (GET and OAuth2 POST), Basic on
/v2/, refresh tokens, robot rotation and revocation, lockout, password storage."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from oci import assert_error
from skyport.auth import passwords
from skyport.auth.identities import AuthError
from skyport.auth.service import AuthService

from .conftest import basic, bearer

PASSWORD = "alice-password-1"


@pytest.fixture
def alice(auth_registry):
    auth_registry.identities.add_user("alice", PASSWORD, groups=["team"])
    auth_registry.identities.grant("team/*", "group:team", ["push"])
    return auth_registry.identities


def oauth(client, **form):
    return client.post("/auth/token", data=form)


def test_get_token_with_basic_credentials_and_offline_token(alice, auth_client):
    response = auth_client.get(
        "/auth/token",
        params={
            "service": "skyport",
            "scope": "repository:team/app:pull",
            "offline_token": "true",
            "client_id": "docker",
        },
        headers=basic("alice", PASSWORD),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"] and body["refresh_token"]
    assert body["issued_at"].endswith("Z")
    # The refresh token is no access token.
    assert_error(auth_client.get("/v2/", headers=bearer(body["refresh_token"])), 401, "UNAUTHORIZED")
    assert auth_client.get("/v2/", headers=bearer(body["token"])).status_code == 200


def test_bad_passwords_are_refused_cleanly(alice, auth_client):
    for username, password in (
        ("alice", "wrong-password"),
        ("nobody", PASSWORD),
        ("alice", ""),
        ("ALICE", PASSWORD),
        ("alice", PASSWORD + "x"),
    ):
        response = auth_client.get("/auth/token", headers=basic(username, password))
        error = assert_error(response, 401, "UNAUTHORIZED")
        assert error["message"] == "invalid username or password"
        assert_error(auth_client.get("/v2/", headers=basic(username, password)), 401, "UNAUTHORIZED")
        alice.unlock("alice")  # (two failures per round: the lockout is tested below)
    for header in (
        "Basic !!!notbase64",
        "Basic " + "YWxpY2U=",
        "Digest abc",
    ):  # "alice" without ':'
        assert_error(auth_client.get("/v2/", headers={"Authorization": header}), 401, "UNAUTHORIZED")


def test_oauth_password_and_refresh_grants(alice, auth_client):
    response = oauth(
        auth_client,
        grant_type="password",
        username="alice",
        password=PASSWORD,
        service="skyport",
        scope="repository:team/app:pull,push repository:x/y:pull",
        client_id="containerd-client",
        access_type="offline",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"] and body["refresh_token"] and body["expires_in"] >= 60
    assert body["scope"] == "repository:team/app:pull,push"
    response = oauth(
        auth_client,
        grant_type="refresh_token",
        refresh_token=body["refresh_token"],
        service="skyport",
        scope="repository:team/other:push",
        client_id="docker",
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "repository:team/other:push"  # what was asked, no more
    # Wrong password, bad refresh token, an access token as refresh token, unknown grant.
    assert_error(
        oauth(auth_client, grant_type="password", username="alice", password="nope"),
        401,
        "UNAUTHORIZED",
    )
    assert_error(oauth(auth_client, grant_type="refresh_token", refresh_token="x.y.z"), 401, "UNAUTHORIZED")
    assert_error(
        oauth(auth_client, grant_type="refresh_token", refresh_token=body["access_token"]),
        401,
        "UNAUTHORIZED",
    )
    assert_error(oauth(auth_client, grant_type="client_credentials"), 405, "UNSUPPORTED")


def test_a_new_password_ends_refresh_tokens(alice, auth_client):
    refresh = oauth(
        auth_client,
        grant_type="password",
        username="alice",
        password=PASSWORD,
        access_type="offline",
    ).json()["refresh_token"]
    alice.set_password("alice", "alice-password-2")
    assert_error(oauth(auth_client, grant_type="refresh_token", refresh_token=refresh), 401, "UNAUTHORIZED")
    assert_error(auth_client.get("/v2/", headers=basic("alice", PASSWORD)), 401, "UNAUTHORIZED")
    assert auth_client.get("/v2/", headers=basic("alice", "alice-password-2")).status_code == 200


def test_basic_credentials_directly_on_the_routes(alice, auth_client):
    headers = basic("alice", PASSWORD)
    assert auth_client.get("/v2/", headers=headers).status_code == 200
    response = auth_client.post("/v2/team/app/blobs/uploads/", headers=headers)
    assert response.status_code == 202
    assert_error(auth_client.post("/v2/other/app/blobs/uploads/", headers=headers), 403, "DENIED")


def test_robot_secret_is_shown_once_and_can_be_rotated_and_revoked(auth_registry, auth_client):
    auth = auth_registry.identities
    robot, secret = auth.add_robot("ci")
    assert robot.name == "robot+ci" and robot.kind == "robot" and secret.startswith("skp_")
    auth.grant("team/*", robot.name, ["push"])
    stored = auth._store.get_identity("robot+ci")
    assert secret not in repr(stored) and stored.password_hash.startswith("scrypt$")
    refresh = auth_client.get(
        "/auth/token", params={"offline_token": "true"}, headers=basic("robot+ci", secret)
    ).json()["refresh_token"]
    assert (
        auth_client.post("/v2/team/app/blobs/uploads/", headers=basic("robot+ci", secret)).status_code == 202
    )

    new_secret = auth.rotate_robot("ci")
    assert new_secret != secret
    assert_error(auth_client.get("/v2/", headers=basic("robot+ci", secret)), 401, "UNAUTHORIZED")
    assert_error(oauth(auth_client, grant_type="refresh_token", refresh_token=refresh), 401, "UNAUTHORIZED")
    assert auth_client.get("/v2/", headers=basic("robot+ci", new_secret)).status_code == 200

    auth.delete("robot+ci")
    assert_error(auth_client.get("/v2/", headers=basic("robot+ci", new_secret)), 401, "UNAUTHORIZED")
    assert [g for g in auth.list_grants() if g.principal == "robot+ci"] == []
    # A new robot of the same name starts with no permissions.
    again, again_secret = auth.add_robot("ci")
    assert_error(
        auth_client.post("/v2/team/app/blobs/uploads/", headers=basic(again.name, again_secret)),
        403,
        "DENIED",
    )


def test_repeated_failures_lock_the_identity_with_growing_delays(auth_registry):
    settings = auth_registry.settings
    now = [1_000_000.0]
    auth = AuthService(auth_registry.auth._store, settings, clock=lambda: now[0])
    auth_registry.identities.add_user("alice", PASSWORD)
    from skyport.errors import TooManyRequests, Unauthorized

    for _ in range(settings.lockout_threshold):
        with pytest.raises(Unauthorized):
            auth.authenticate("alice", "wrong-password")
    # Locked: even the right password is refused, without being checked.
    with pytest.raises(TooManyRequests) as locked:
        auth.authenticate("alice", PASSWORD)
    assert locked.value.status == 429 and locked.value.retry_after >= 1
    now[0] += 2
    with pytest.raises(Unauthorized):
        auth.authenticate("alice", "wrong-password")  # the 6th failure: 2 s this time
    now[0] += 1
    with pytest.raises(TooManyRequests):
        auth.authenticate("alice", PASSWORD)
    now[0] += 2
    assert auth.authenticate("alice", PASSWORD).name == "alice"  # a success clears the count
    assert auth._store.get_lockout("alice", "") is None
    # The delay stops growing at the cap (a small one here: each round costs one scrypt).
    capped = AuthService(auth._store, replace(settings, lockout_max_seconds=4), clock=lambda: now[0])
    for _ in range(settings.lockout_threshold + 4):
        now[0] += 5
        with pytest.raises(Unauthorized):
            capped.authenticate("alice", "wrong-password")
    record = auth._store.get_lockout("alice", "")
    assert record.failures == settings.lockout_threshold + 4 and record.locked_until - now[0] == 4
    auth_registry.identities.unlock("alice")
    assert auth.authenticate("alice", PASSWORD).name == "alice"


def test_lockout_over_http_is_429(auth_registry, auth_client):
    auth_registry.identities.add_user("alice", PASSWORD)
    for _ in range(auth_registry.settings.lockout_threshold):
        assert_error(
            auth_client.get("/auth/token", headers=basic("alice", "bad-password")),
            401,
            "UNAUTHORIZED",
        )
    response = auth_client.get("/auth/token", headers=basic("alice", PASSWORD))
    assert_error(response, 429, "TOOMANYREQUESTS")
    assert response.headers["Retry-After"]


def test_passwords_are_salted_scrypt_checked_in_constant_time(monkeypatch):
    stored = passwords.hash_password("hunter2-hunter2")
    scheme, log2_n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(log2_n), int(r), int(p)) == ("scrypt", 15, 8, 1)
    assert stored != passwords.hash_password("hunter2-hunter2")  # salted
    assert passwords.verify_password("hunter2-hunter2", stored)
    passwords.verify_password("warm-up", None)  # makes the stand-in hash for unknown identities
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(k) or real(*a, **k))
    compared = []
    real_compare = passwords.hmac.compare_digest
    monkeypatch.setattr(
        passwords.hmac, "compare_digest", lambda a, b: compared.append(1) or real_compare(a, b)
    )
    # Wrong password, unknown identity, a corrupt stored hash, an over-long input: one scrypt
    # at full cost and one constant-time comparison each, so none answers faster.
    for secret, stored_hash in (
        ("wrong", stored),
        ("x", None),
        ("x", "garbage"),
        ("x" * 5000, stored),
    ):
        calls.clear()
        compared.clear()
        assert not passwords.verify_password(secret, stored_hash)
        assert len(calls) == 1 and calls[0]["n"] == 2**15 and compared == [1]


def test_admin_operations_validate_their_input(auth_registry):
    auth = auth_registry.identities
    with pytest.raises(ValueError):
        auth.add_user("Not Valid", PASSWORD)
    with pytest.raises(AuthError):
        auth.add_user("short", "short")
    with pytest.raises(AuthError):
        auth.add_user("robot+x", PASSWORD)
    auth.add_user("alice", PASSWORD)
    with pytest.raises(AuthError):
        auth.add_user("alice", PASSWORD)
    with pytest.raises(ValueError):
        auth.grant("Team/*", "alice", ["pull"])
    with pytest.raises(ValueError):
        auth.grant("team/*", "alice", ["write"])
    with pytest.raises(AuthError):
        auth.grant("team/*", "*", ["push"])  # everyone may only pull
    assert auth.grant("team/*", "alice", ["delete"]) == {"pull", "delete"}
    assert auth.grant("team/*", "alice", ["push"]) == {"pull", "push", "delete"}  # added to
    with pytest.raises(AuthError):
        auth.revoke("team/*", "bob")


def test_deployed_first_admin_is_bootstrapped_once(auth_registry, auth_client):
    store = auth_registry.auth._store
    auth = AuthService(
        store,
        auth_registry.settings,
        auth_registry.auth.keys,
        bootstrap=lambda: ("admin", "bootstrap-password"),
    )
    assert auth.authenticate("admin", "bootstrap-password").admin
    auth_registry.identities.delete("admin")
    from skyport.errors import Unauthorized

    with pytest.raises(Unauthorized):  # once in the registry's life: not re-created
        auth.authenticate("admin", "bootstrap-password")
    with pytest.raises(Unauthorized):
        auth.authenticate("someone-else", "bootstrap-password")
