"""The auth service: who is calling, what they may do, and their tokens.

Front ends ask three things of it: who is calling (``authenticate`` for a password
or robot secret, ``verify_access`` for a bearer token), what that identity may do
(``policy``), and a token for what it asked (``issue``, ``refresh``). Identity admin
is ``identities.IdentityAdmin``.

A wrong password costs the same time whether or not the identity exists. After
``lockout_threshold`` failures of a user from one source address within
``lockout_window_seconds`` (older failures no longer count), that user is locked for
that address for 1 s, then 2, 4, ... up to ``lockout_max_seconds``, measured from
the end of the failed check; a success clears the count. Per address, so a stranger
cannot lock a user out everywhere; robots are never locked (a 256-bit secret is not
guessed, and a lock would only let anyone stop a CI job). Every method may
block (storage, a key source, scrypt): async callers run them as concurrency.py says.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..errors import TooManyRequests, Unauthorized
from ..storage.ports import AuthStore
from . import passwords, tokens
from . import policy as access
from .bootstrap import Credentials, bootstrap_admin
from .identities import identity_of
from .keys import TableKeys
from .policy import ANONYMOUS, Grant, Identity, Policy, Scope
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


class AuthService:
    def __init__(
        self,
        store: AuthStore,
        settings: Settings,
        keys: KeySource | None = None,
        *,
        clock: Callable[[], float] = time.time,
        bootstrap: Credentials | None = None,
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
        self._credentials: dict[bytes, tuple[float, str, int, str]] = {}

    # --- keys ---------------------------------------------------------------------------

    def _keyring(self, *, unknown_kid: bool = False) -> KeyRing:
        now = time.monotonic()
        with self._lock:
            stale = self._ring is None or now - self._ring_loaded > KEY_CACHE_SECONDS
            retry = unknown_kid and (not self._ring_checked or now - self._ring_checked > KEY_RELOAD_INTERVAL)
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
        return hmac.new(self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def authenticate(self, username: str, password: str, source: str = "") -> Identity:
        """The identity whose password or robot secret this is; else Unauthorized (or
        TooManyRequests while the user is locked for ``source``, the caller's address,
        after repeated failures)."""
        now = self._clock()
        try:
            access.validate_identity_name(username)
            record = self._store.get_identity(username)
        except access.InvalidName:
            record = None
        if record is None and self.bootstrap is not None:
            # The first admin of a deployed registry (bootstrap.py): created on its first login.
            record = bootstrap_admin(self._store, self.bootstrap, username, int(now))
        lockable = record is not None and record.kind != "robot"
        lock = self._store.get_lockout(record.name, source) if record and lockable else None
        if lock is not None and lock.locked_until > now:
            retry = math.ceil(lock.locked_until - now)
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
            and cached[1:] == (record.name, record.generation, record.identity_id)
        ):
            return identity_of(record)
        if not passwords.verify_password(password, record.password_hash if record else None):
            if record is not None and lockable:
                # The clock is read after scrypt: a lock lasts its full time from the
                # answer, not from the start of a slow check.
                self._store.record_failed_login(
                    record.name,
                    source,
                    math.ceil(self._clock()),
                    self._settings.lockout_threshold,
                    self._settings.lockout_max_seconds,
                    self._settings.lockout_window_seconds,
                )
            raise Unauthorized(message="invalid username or password")
        assert record is not None
        if lock is not None:
            self._store.clear_failed_logins(record.name, source)
        with self._lock:
            if len(self._credentials) >= CREDENTIAL_CACHE_SIZE:
                self._credentials.clear()
            self._credentials[cache_key] = (
                now + CREDENTIAL_CACHE_SECONDS,
                record.name,
                record.generation,
                record.identity_id,
            )
        return identity_of(record)

    def identity(self, name: str) -> Identity:
        """The identity a token names, as it is now (anonymous if it is gone)."""
        if not name:
            return ANONYMOUS
        record = self._store.get_identity(name)
        return identity_of(record) if record else ANONYMOUS

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

    def issue(self, identity: Identity, scopes: Iterable[Scope], *, offline: bool = False) -> dict[str, Any]:
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
            "scope": " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in claims["access"]),
        }
        if offline and not identity.anonymous:
            refresh = self._claims(
                identity.name, tokens.USE_REFRESH, self._settings.refresh_token_ttl_seconds, now
            )
            refresh["gen"] = identity.generation
            refresh["iid"] = identity.identity_id
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
        if (
            record is None
            or record.generation != claims.get("gen")
            or not record.identity_id
            or not hmac.compare_digest(record.identity_id, str(claims.get("iid", "")))
        ):
            raise Unauthorized(message="refresh token no longer valid: log in again")
        return identity_of(record)
