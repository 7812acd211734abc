"""Signed tokens (JWT, RFC 7519) for the Docker token protocol, with the stdlib only.

The registry both issues and verifies its tokens, so a shared-secret MAC is
enough: HS256 (HMAC-SHA256). Verification accepts exactly that algorithm
(never ``none``, never one the token names), a key id (``kid``) naming the
current or the previous signing key (so tokens signed before a rotation stay
valid until they expire), and checks ``exp``, ``nbf``, ``iat``, ``aud``, ``iss``
and the token's use (access or refresh: one is never accepted as the other).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 16 * 1024
# Clock skew tolerated between the instances that issue and verify (all AWS-synced).
LEEWAY_SECONDS = 5
USE_ACCESS = "access"
USE_REFRESH = "refresh"


class TokenInvalid(Exception):
    """Malformed, forged, expired or not meant for us; the message says which (for tests
    and logs; clients hear only UNAUTHORIZED)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> SigningKey:
        if len(secret) < 32:
            raise ValueError("a signing key needs at least 32 bytes")
        # The key id is a MAC of a constant: it names the key without revealing it.
        kid = hmac.new(secret, b"skyport key id", hashlib.sha256).hexdigest()[:16]
        return cls(kid, secret)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_secret(secrets.token_bytes(32))


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key that signs (``current``) and the keys that still verify (``current`` and
    ``previous``: the one before the last rotation)."""

    current: SigningKey
    previous: SigningKey | None = None

    def find(self, kid: str) -> SigningKey | None:
        for key in (self.current, self.previous):
            if key is not None and hmac.compare_digest(key.kid, kid):
                return key
        return None


class KeySource:
    """Where signing keys come from (keys.py: the table locally, Secrets Manager or SSM
    when deployed). The auth service calls ``load`` again every few minutes, and when a
    token names a key it does not know."""

    def load(self) -> KeyRing:  # pragma: no cover - interface
        raise NotImplementedError


class StaticKeys(KeySource):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def load(self) -> KeyRing:
        return self.ring


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # RFC 7515 section 2: base64url without padding. A length of 1 modulo 4 can never
    # be such an encoding (binascii refuses it): a malformed token, never a server error.
    if not text or len(text) % 4 == 1 or any(c not in _B64_CHARS for c in text):
        raise TokenInvalid("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as error:  # binascii.Error is a ValueError
        raise TokenInvalid("not base64url") from error


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(part))
    # RecursionError: a deeply nested array fits in MAX_TOKEN_LENGTH.
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise TokenInvalid("not JSON") from error
    if not isinstance(value, dict):
        raise TokenInvalid("not a JSON object")
    return value


def encode(claims: dict[str, Any], key: SigningKey) -> str:
    header = {"typ": "JWT", "alg": ALGORITHM, "kid": key.kid}
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(key.secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def decode(
    token: str,
    keys: Callable[[str], SigningKey | None],
    *,
    audience: str,
    issuer: str,
    use: str,
    now: float,
    leeway: int = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """The claims of a token that passes every check; else TokenInvalid.
    ``keys(kid)`` returns the key for a key id, or None."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("not a JWS compact serialization")
    header = _json(parts[0])
    # The algorithm is ours to choose, never the token's: `none`, RS256 with our key
    # as a "public key", or anything else is refused before any key is looked up.
    if header.get("alg") != ALGORITHM:
        raise TokenInvalid(f"algorithm {str(header.get('alg'))[:20]!r} not accepted")
    if header.get("crit") is not None:
        raise TokenInvalid("critical header parameters are not understood")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenInvalid("no key id")
    key = keys(kid)
    if key is None:
        raise TokenInvalid("unknown key id")
    expected = hmac.new(key.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(parts[2])):
        raise TokenInvalid("bad signature")
    claims = _json(parts[1])
    _check_claims(claims, audience=audience, issuer=issuer, use=use, now=now, leeway=leeway)
    return claims


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TokenInvalid(f"no numeric {name}")
    return float(value)


def _check_claims(
    claims: dict[str, Any], *, audience: str, issuer: str, use: str, now: float, leeway: int
) -> None:
    if _number(claims, "exp") <= now - leeway:
        raise TokenInvalid("expired")
    if _number(claims, "nbf") > now + leeway:
        raise TokenInvalid("not yet valid")
    if _number(claims, "iat") > now + leeway:
        raise TokenInvalid("issued in the future")
    if claims.get("iss") != issuer:
        raise TokenInvalid("wrong issuer")
    aud = claims.get("aud")
    audiences: Sequence[Any] = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise TokenInvalid("wrong audience")
    if claims.get("use") != use:
        raise TokenInvalid(f"not an {use} token")
    if not isinstance(claims.get("sub"), str):
        raise TokenInvalid("no subject")
