"""Password and robot-secret hashing: salted scrypt (stdlib), checked in constant time.

A stored hash reads ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (salt and hash
base64url, unpadded), so the cost can be raised later without breaking the
hashes already stored: each is checked with the parameters it was made with.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# n = 2**15, r = 8: 32 MiB of memory and tens of milliseconds of CPU per check
# (OWASP's scrypt guidance), affordable in a 1 GiB Lambda, ruinous for a guesser.
DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_MAXMEM = 128 * 1024 * 1024
MAX_SECRET_LENGTH = 1024  # longer inputs are refused before hashing (a cheap DoS otherwise)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=2**log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=HASH_BYTES)


def hash_password(
    secret: str, *, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValueError("password too long")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, log2_n, r, p)
    return f"scrypt${log2_n}${r}${p}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _dummy() -> str:
    # Checked against when the identity does not exist, so that an unknown name
    # costs the same time as a wrong password (no user enumeration by timing).
    # Made on first use, not at import: it costs one scrypt.
    return hash_password(secrets.token_urlsafe(16))


def verify_password(secret: str, stored: str | None) -> bool:
    """True when ``secret`` matches ``stored``. Always runs one scrypt, whatever the input."""
    candidate = secret if len(secret) <= MAX_SECRET_LENGTH else ""
    try:
        scheme, log2_n, r, p, salt, expected = (stored or _dummy()).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        params = int(log2_n), int(r), int(p)
        salt_bytes, expected_bytes = _unb64(salt), _unb64(expected)
    except ValueError:
        scheme, params, salt_bytes, expected_bytes, stored = (
            "",
            (DEFAULT_LOG2_N, 8, 1),
            b"x",
            b"",
            None,
        )
    actual = _scrypt(candidate, salt_bytes, *params)
    matches = hmac.compare_digest(actual, expected_bytes)
    return matches and stored is not None and candidate == secret


def new_secret() -> str:
    """A robot account's secret: 256 random bits, shown once and stored only hashed."""
    return "skp_" + secrets.token_urlsafe(32)
