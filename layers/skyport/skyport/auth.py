"""Authentication and tokens: users and robot accounts, the Docker token protocol, grants.

Front ends ask three things of this service: who is calling (``authenticate``
for a password or robot secret, ``verify_access`` for a bearer token), what
that identity may do (``policy``), and a token for what it asked (``issue``).
The admin commands (``skyport user|robot|grant|revoke|repo``) use the rest.

Passwords and robot secrets are stored as scrypt hashes (passwords.py). A wrong
password costs the same time whether or not the identity exists, and after
``lockout_threshold`` failures in a row the identity is locked for 1 s, then 2,
4, ... up to ``lockout_max_seconds``; a success clears the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from . import access, passwords, tokens
from .access import ANONYMOUS, Grant, Identity, Policy, Scope
from .config import Settings
from .errors import TooManyRequests, Unauthorized
from .storage.ports import AuthStore, IdentityRecord
from .tokens import KeyRing, KeySource, SigningKey, TokenInvalid

# A key id the ring does not know may be a key rotated in after this instance
# loaded its keys: reload, but at most this often (a forged kid costs nothing else).
KEY_RELOAD_INTERVAL = 10.0
# Keys are reloaded at least this often, so a rotation reaches warm instances.
KEY_CACHE_SECONDS = 300.0
# A password that was just verified is remembered (as an HMAC, in memory) this long,
# so a client sending Basic credentials on every request pays scrypt once, not each time.
CREDENTIAL_CACHE_SECONDS = 60.0
CREDENTIAL_CACHE_SIZE = 1024


class AuthError(ValueError):
    """An admin operation that cannot be done (unknown identity, bad name, ...)."""


class TableKeys(KeySource):
    """Signing keys kept in the registry's own table: local stacks (`skyport serve`). The
    first load makes one. Deployed stacks read theirs from Secrets Manager or SSM."""

    def __init__(self, store: AuthStore) -> None:
        self._store = store

    def load(self) -> KeyRing:
        stored = self._store.get_signing_keys()
        if stored is None:
            self._store.put_signing_keys(secrets.token_bytes(32), None, replacing=None)
            stored = self._store.get_signing_keys()
            assert stored is not None
        current, previous = stored
        return KeyRing(
            SigningKey.from_secret(current), SigningKey.from_secret(previous) if previous else None
        )

    def rotate(self) -> KeyRing:
        """A new current key; the old one verifies until its tokens have expired."""
        ring = self.load()
        if not self._store.put_signing_keys(
            secrets.token_bytes(32), ring.current.secret, replacing=ring.current.secret
        ):
            raise AuthError("the signing keys changed meanwhile; try again")
        return self.load()


def _identity(record: IdentityRecord) -> Identity:
    return Identity(record.name, record.kind, record.admin, record.groups, record.generation)


class AuthService:
    def __init__(
        self,
        store: AuthStore,
        settings: Settings,
        keys: KeySource | None = None,
        *,
        clock: Callable[[], float] = time.time,
        bootstrap: Callable[[], tuple[str, str] | None] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self.keys: KeySource = keys or TableKeys(store)
        self._clock = clock
        self.bootstrap = bootstrap
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._ring_loaded = 0.0
        self._ring_checked = 0.0
        self._cache_key = secrets.token_bytes(32)
        self._credentials: dict[bytes, tuple[float, str, int]] = {}

    # --- keys ---------------------------------------------------------------------------

    def _keyring(self, *, unknown_kid: bool = False) -> KeyRing:
        now = time.monotonic()
        with self._lock:
            stale = self._ring is None or now - self._ring_loaded > KEY_CACHE_SECONDS
            retry = unknown_kid and (
                not self._ring_checked or now - self._ring_checked > KEY_RELOAD_INTERVAL
            )
            if retry:
                self._ring_checked = now
            if stale or retry:
                self._ring = self.keys.load()
                self._ring_loaded = now
            assert self._ring is not None
            return self._ring

    def _key_for(self, kid: str) -> SigningKey | None:
        key = self._keyring().find(kid)
        return key if key is not None else self._keyring(unknown_kid=True).find(kid)

    # --- authentication -----------------------------------------------------------------

    def _credential_key(self, username: str, password: str) -> bytes:
        return hmac.new(
            self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256
        ).digest()

    def authenticate(self, username: str, password: str) -> Identity:
        """The identity whose password or robot secret this is; else Unauthorized (or
        TooManyRequests while the identity is locked after repeated failures)."""
        now = self._clock()
        try:
            access.validate_identity_name(username)
            record = self._store.get_identity(username)
        except access.InvalidName:
            record = None
        if record is None and self.bootstrap is not None:
            record = self._bootstrap(username)
        if record is not None and record.locked_until > now:
            retry = int(record.locked_until - now) + 1
            raise TooManyRequests(
                message="too many failed logins: try again later",
                retry_after=retry,
            )
        cache_key = self._credential_key(username, password)
        cached = self._credentials.get(cache_key)
        if (
            record is not None
            and cached
            and cached[0] > now
            and cached[1:] == (record.name, record.generation)
        ):
            return _identity(record)
        if not passwords.verify_password(password, record.password_hash if record else None):
            if record is not None:
                self._store.record_failed_login(
                    record.name,
                    int(now),
                    self._settings.lockout_threshold,
                    self._settings.lockout_max_seconds,
                )
            raise Unauthorized(message="invalid username or password")
        assert record is not None
        if record.failed_logins:
            self._store.clear_failed_logins(record.name)
        with self._lock:
            if len(self._credentials) >= CREDENTIAL_CACHE_SIZE:
                self._credentials.clear()
            self._credentials[cache_key] = (
                now + CREDENTIAL_CACHE_SECONDS,
                record.name,
                record.generation,
            )
        return _identity(record)

    def _bootstrap(self, username: str) -> IdentityRecord | None:
        """The first admin of a deployed registry, from the secret the template names:
        created on its first login, once in the registry's life."""
        assert self.bootstrap is not None
        credentials = self.bootstrap()
        if not credentials or credentials[0] != username:
            return None
        name, password = credentials
        record = IdentityRecord(
            name,
            "user",
            passwords.hash_password(password),
            admin=True,
            created_at=int(self._clock()),
        )
        self._store.bootstrap_admin(record)
        return self._store.get_identity(username)

    def identity(self, name: str) -> Identity:
        """The identity a token names, as it is now (anonymous if it is gone)."""
        if not name:
            return ANONYMOUS
        record = self._store.get_identity(name)
        return _identity(record) if record else ANONYMOUS

    def policy(self, identity: Identity) -> Policy:
        grants = [Grant(p, who, actions) for p, who, actions in self._store.list_grants()]
        return Policy(identity, grants)

    # --- tokens -------------------------------------------------------------------------

    def _claims(self, subject: str, use: str, ttl: int, now: int) -> dict[str, Any]:
        settings = self._settings
        return {
            "iss": settings.token_issuer,
            "sub": subject,
            "aud": settings.token_service,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
            "use": use,
        }

    def issue(
        self, identity: Identity, scopes: Iterable[Scope], *, offline: bool = False
    ) -> dict[str, Any]:
        """The token response: an access token for what was asked, intersected with
        what ``identity`` may do, and a refresh token when ``offline`` (not anonymous)."""
        now = int(self._clock())
        ttl = self._settings.token_ttl_seconds
        claims = self._claims(identity.name, tokens.USE_ACCESS, ttl, now)
        claims["access"] = self.policy(identity).grant(scopes)
        key = self._keyring().current
        token = tokens.encode(claims, key)
        response: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": ttl,
            "issued_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            # What was granted, as OAuth2 responses say it (space-separated scopes).
            "scope": " ".join(
                f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in claims["access"]
            ),
        }
        if offline and not identity.anonymous:
            refresh = self._claims(
                identity.name, tokens.USE_REFRESH, self._settings.refresh_token_ttl_seconds, now
            )
            refresh["gen"] = identity.generation
            response["refresh_token"] = tokens.encode(refresh, key)
        return response

    def _decode(self, token: str, use: str) -> dict[str, Any]:
        settings = self._settings
        try:
            return tokens.decode(
                token,
                self._key_for,
                audience=settings.token_service,
                issuer=settings.token_issuer,
                use=use,
                now=self._clock(),
            )
        except TokenInvalid as error:
            raise Unauthorized({"reason": str(error)}, message="invalid token") from error

    def verify_access(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; else Unauthorized."""
        return self._decode(token, tokens.USE_ACCESS)

    def refresh(self, refresh_token: str) -> Identity:
        """The identity of a valid refresh token whose identity still exists with the
        same secret (a new password, a rotated or revoked robot: refused)."""
        claims = self._decode(refresh_token, tokens.USE_REFRESH)
        record = self._store.get_identity(claims["sub"]) if claims["sub"] else None
        if record is None or record.generation != claims.get("gen"):
            raise Unauthorized(message="refresh token no longer valid: log in again")
        return _identity(record)

    # --- administration -----------------------------------------------------------------

    def _require(self, name: str) -> IdentityRecord:
        record = self._store.get_identity(name)
        if record is None:
            raise AuthError(f"no such user or robot: {name}")
        return record

    def add_user(
        self, name: str, password: str, *, admin: bool = False, groups: Iterable[str] = ()
    ) -> Identity:
        access.validate_identity_name(name)
        if name.startswith(access.ROBOT_PREFIX):
            raise AuthError("user names may not start with robot+ (use `skyport robot add`)")
        _check_password(password)
        record = IdentityRecord(
            name,
            "user",
            passwords.hash_password(password),
            admin=admin,
            groups=_groups(groups),
            created_at=int(self._clock()),
        )
        if not self._store.create_identity(record):
            raise AuthError(f"{name} exists")
        return _identity(record)

    def add_robot(self, name: str, *, groups: Iterable[str] = ()) -> tuple[Identity, str]:
        """A robot account (for CI) and its secret, which is shown once and never stored."""
        full = name if name.startswith(access.ROBOT_PREFIX) else f"{access.ROBOT_PREFIX}{name}"
        access.validate_identity_name(full)
        secret = passwords.new_secret()
        record = IdentityRecord(
            full,
            "robot",
            passwords.hash_password(secret),
            groups=_groups(groups),
            created_at=int(self._clock()),
        )
        if not self._store.create_identity(record):
            raise AuthError(f"{full} exists")
        return _identity(record), secret

    def set_password(self, name: str, password: str) -> None:
        """A new password (users) or secret; refresh tokens issued before stop working."""
        _check_password(password)
        if not self._store.update_identity(name, password_hash=passwords.hash_password(password)):
            raise AuthError(f"no such user or robot: {name}")

    def rotate_robot(self, name: str) -> str:
        record = self._require(
            name if name.startswith(access.ROBOT_PREFIX) else f"{access.ROBOT_PREFIX}{name}"
        )
        if record.kind != "robot":
            raise AuthError(f"{record.name} is not a robot account")
        secret = passwords.new_secret()
        self._store.update_identity(record.name, password_hash=passwords.hash_password(secret))
        return secret

    def update(
        self, name: str, *, admin: bool | None = None, groups: Iterable[str] | None = None
    ) -> None:
        if not self._store.update_identity(
            name, admin=admin, groups=_groups(groups) if groups is not None else None
        ):
            raise AuthError(f"no such user or robot: {name}")

    def unlock(self, name: str) -> None:
        self._require(name)
        self._store.clear_failed_logins(name)

    def delete(self, name: str) -> None:
        """Remove a user or robot (revoking a robot) and the grants made to it by name."""
        if not self._store.delete_identity(name):
            raise AuthError(f"no such user or robot: {name}")
        for pattern, principal, _ in self._store.list_grants():
            if principal == name:
                self._store.delete_grant(pattern, principal)

    def list_identities(self) -> list[IdentityRecord]:
        return self._store.list_identities()

    def ensure_admin(self, name: str, password: str) -> bool:
        """Make ``name`` an admin with this password (local stacks: `SKYPORT_AUTH=on make run`).
        True when it was created."""
        try:
            self.add_user(name, password, admin=True)
            return True
        except AuthError:
            self.set_password(name, password)
            self.update(name, admin=True)
            return False

    def grant(self, pattern: str, principal: str, actions: Iterable[str]) -> frozenset[str]:
        access.validate_pattern(pattern)
        access.validate_principal(principal)
        normalized = access.normalize_actions(actions)
        if principal == access.EVERYONE and normalized != {access.PULL}:
            raise AuthError("everyone (*) may only be granted pull: `skyport repo public PATTERN`")
        for pattern_, principal_, existing in self._store.list_grants():
            if (pattern_, principal_) == (pattern, principal):
                normalized |= existing
        self._store.put_grant(pattern, principal, normalized)
        return normalized

    def revoke(self, pattern: str, principal: str) -> None:
        if not self._store.delete_grant(pattern, principal):
            raise AuthError(f"no grant on {pattern} to {principal}")

    def list_grants(self) -> list[Grant]:
        return sorted(
            (Grant(p, who, a) for p, who, a in self._store.list_grants()),
            key=lambda g: (g.pattern, g.principal),
        )

    def set_public(self, pattern: str, public: bool = True) -> None:
        """Anonymous pull of the repositories matching ``pattern`` (or not)."""
        if public:
            self.grant(pattern, access.EVERYONE, [access.PULL])
        elif not self._store.delete_grant(pattern, access.EVERYONE):
            raise AuthError(f"{pattern} is not public")


def _groups(groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({access.validate_group(g) for g in groups}))


MIN_PASSWORD_LENGTH = 8


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > passwords.MAX_SECRET_LENGTH:
        raise AuthError("password too long")


__all__ = ["AuthService", "AuthError", "TableKeys"]
