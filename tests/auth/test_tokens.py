"""Tokens: what verification refuses (forged, expired, wrong audience or key, `alg: none`),
key rotation, and the same refusals over HTTP as UNAUTHORIZED."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from oci import assert_error
from skyport.auth import tokens
from skyport.auth.policy import Identity, Scope
from skyport.auth.tokens import KeyRing, SigningKey, StaticKeys, TokenInvalid

from .conftest import basic, bearer

NOW = 1_800_000_000
KEY = SigningKey.generate()
OLD = SigningKey.generate()


def claims(**overrides) -> dict:
    base = {
        "iss": "skyport",
        "sub": "alice",
        "aud": "skyport",
        "exp": NOW + 300,
        "nbf": NOW,
        "iat": NOW,
        "jti": "x",
        "use": "access",
        "access": [],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


RING = KeyRing(KEY)


def decode(token: str, ring: KeyRing = RING, now: float = NOW, use: str = "access") -> dict:
    return tokens.decode(token, ring.find, audience="skyport", issuer="skyport", use=use, now=now)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, key: bytes | None = None, digest=hashlib.sha256) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), digest).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"


def test_a_good_token_decodes():
    assert decode(tokens.encode(claims(), KEY))["sub"] == "alice"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: tokens.encode(claims(exp=NOW - 10), KEY), "expired"),
        (lambda: tokens.encode(claims(nbf=NOW + 60), KEY), "not yet valid"),
        (lambda: tokens.encode(claims(iat=NOW + 60), KEY), "issued in the future"),
        (lambda: tokens.encode(claims(aud="another-registry"), KEY), "wrong audience"),
        (lambda: tokens.encode(claims(iss="someone-else"), KEY), "wrong issuer"),
        (lambda: tokens.encode(claims(exp=None), KEY), "no numeric exp"),
        (lambda: tokens.encode(claims(use="refresh"), KEY), "not an access token"),
        (lambda: tokens.encode(claims(), SigningKey.generate()), "unknown key id"),
        # Signed with another secret under our key id: the signature does not match.
        (
            lambda: forge({"alg": "HS256", "typ": "JWT", "kid": KEY.kid}, claims(), b"x" * 32),
            "bad signature",
        ),
        (
            lambda: forge({"alg": "none", "typ": "JWT", "kid": KEY.kid}, claims()),
            "algorithm 'none'",
        ),
        (lambda: forge({"alg": "None", "kid": KEY.kid}, claims()), "algorithm 'None'"),
        (
            lambda: forge({"alg": "HS512", "kid": KEY.kid}, claims(), KEY.secret, hashlib.sha512),
            "algorithm 'HS512'",
        ),
        # RS256 with our secret as the "public key": the classic confusion attack.
        (
            lambda: forge({"alg": "RS256", "kid": KEY.kid}, claims(), KEY.secret),
            "algorithm 'RS256'",
        ),
        (lambda: forge({"typ": "JWT", "kid": KEY.kid}, claims(), KEY.secret), "algorithm 'None'"),
        (lambda: forge({"alg": "HS256"}, claims(), KEY.secret), "no key id"),
        (
            lambda: forge({"alg": "HS256", "kid": KEY.kid, "crit": ["exp"]}, claims(), KEY.secret),
            "critical",
        ),
        (lambda: "a.b", "not a JWS"),
        (lambda: "....", "not a JWS"),
        (lambda: "!!!.???.***", "not base64url"),
        (lambda: "x" * 20000, "too long"),
    ],
)
def test_bad_tokens_are_refused(token, reason):
    with pytest.raises(TokenInvalid, match=reason):
        decode(token())


def test_a_tampered_payload_is_refused():
    header, _, signature = tokens.encode(claims(), KEY).split(".")
    payload = b64(
        json.dumps(
            claims(sub="admin", access=[{"type": "repository", "name": "x", "actions": ["push"]}])
        ).encode()
    )
    with pytest.raises(TokenInvalid, match="bad signature"):
        decode(f"{header}.{payload}.{signature}")


def test_refresh_and_access_tokens_are_not_interchangeable():
    refresh = tokens.encode(claims(use="refresh"), KEY)
    with pytest.raises(TokenInvalid, match="not an access token"):
        decode(refresh)
    with pytest.raises(TokenInvalid, match="not an refresh token"):
        decode(tokens.encode(claims(), KEY), use="refresh")


def test_rotation_keeps_tokens_of_the_previous_key_valid_until_they_expire():
    old_token = tokens.encode(claims(), OLD)
    rotated = KeyRing(KEY, previous=OLD)
    assert decode(old_token, rotated)["sub"] == "alice"
    with pytest.raises(TokenInvalid, match="expired"):
        decode(old_token, rotated, now=NOW + 301 + tokens.LEEWAY_SECONDS)
    # One more rotation: the key before the previous one verifies nothing.
    with pytest.raises(TokenInvalid, match="unknown key id"):
        decode(old_token, KeyRing(SigningKey.generate(), previous=KEY))


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        SigningKey.from_secret(b"short")


# --- the service: rotation reaches warm instances ---------------------------------------


def test_a_service_picks_up_a_rotated_key(auth_registry):
    from skyport.auth.service import AuthService

    store_keys = StaticKeys(KeyRing(OLD))
    auth = auth_registry.auth
    service = AuthService(auth._store, auth_registry.settings, store_keys)
    issued = service.issue(Identity("alice"), [])
    # Another instance rotated: the new key signs, the old one still verifies.
    other = AuthService(auth._store, auth_registry.settings, StaticKeys(KeyRing(KEY, previous=OLD)))
    assert other.verify_access(issued["token"])["sub"] == "alice"
    newer = other.issue(Identity("alice"), [])["token"]
    # This instance has not reloaded yet; a token naming an unknown key makes it reload.
    store_keys.ring = KeyRing(KEY, previous=OLD)
    assert service.verify_access(newer)["sub"] == "alice"


def test_table_keys_rotate(auth_registry):
    from skyport.auth.keys import TableKeys

    keys = TableKeys(auth_registry.auth._store)
    first = keys.load()
    assert keys.load() == first  # made once, then kept
    second = keys.rotate()
    assert second.previous == first.current and second.current != first.current


# --- over HTTP ----------------------------------------------------------------------------


def test_forged_and_expired_tokens_are_unauthorized_over_http(auth_registry, auth_client):
    auth_registry.identities.add_user("alice", "alice-password")
    auth_registry.identities.grant("team/*", "alice", ["push"])
    ring = auth_registry.auth.keys.load()
    now = int(time.time())
    good = dict(
        claims(iat=now, nbf=now, exp=now + 300),
        access=[{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
    )
    forged = {
        "expired": tokens.encode({**good, "exp": now - 60, "iat": now - 400, "nbf": now - 400}, ring.current),
        "wrong audience": tokens.encode({**good, "aud": "elsewhere"}, ring.current),
        "wrong key": tokens.encode(good, SigningKey.generate()),
        "alg none": forge({"alg": "none", "kid": ring.current.kid}, good),
        "garbage": "not-a-token",
        "refresh token": tokens.encode({**good, "use": "refresh", "gen": 1}, ring.current),
    }
    for what, token in forged.items():
        for path in ("/v2/", "/v2/team/app/tags/list", "/v2/_catalog"):
            response = auth_client.get(path, headers=bearer(token))
            error = assert_error(response, 401, "UNAUTHORIZED")
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], what
            assert token not in response.text and "detail" not in error, what
    # The genuine one works.
    assert (
        auth_client.get(
            "/v2/team/app/tags/list", headers=bearer(tokens.encode(good, ring.current))
        ).status_code
        == 404
    )  # allowed; the repository does not exist yet


def test_a_token_grants_only_what_was_asked_and_allowed(auth_registry, auth_client):
    auth_registry.identities.add_user("alice", "alice-password")
    auth_registry.identities.grant("team/*", "alice", ["pull"])
    response = auth_client.get(
        "/auth/token",
        headers=basic("alice", "alice-password"),
        params=[
            ("scope", "repository:team/app:pull,push,delete"),
            ("scope", "repository:other/app:pull"),
            ("scope", "registry:catalog:*"),
            ("scope", "repository:team/NOT-VALID:pull"),
            ("scope", "junk"),
        ],
    )
    body = response.json()
    payload = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert payload["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert body["scope"] == "repository:team/app:pull registry:catalog:*"
    assert payload["sub"] == "alice" and payload["aud"] == "skyport" and payload["iss"] == "skyport"
    assert payload["exp"] - payload["iat"] == body["expires_in"] >= 60
    assert "refresh_token" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_a_scope_in_the_challenge_parses_back(auth_client):
    from skyport.auth.policy import parse_scopes

    assert parse_scopes(["repository:team/app:pull,push repository(plugin):x:pull"]) == [
        Scope("repository", "team/app", ("pull", "push")),
        Scope("repository", "x", ("pull",)),
    ]
