"""Where token signing keys come from: the registry's own table (local stacks), or a
Secrets Manager secret or an SSM parameter (deployed; template.yaml names which in
SKYPORT_SIGNING_KEY_SECRET or SKYPORT_SIGNING_KEY_PARAMETER).

A secret or parameter holds the key itself, or JSON ``{"current": …, "previous": …}``
to rotate by hand; a Secrets Manager secret's previous version (the AWSPREVIOUS stage,
kept by Secrets Manager on rotation) also verifies. Values read from AWS are kept
``VALUE_MAX_AGE`` seconds (the auth service reloads keys every few minutes, or when a
token names a key it does not know). boto3 clients come from ``storage.clients``,
created on first use, never in Lambda's init phase.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..config import Settings
from ..storage.clients import AwsClients
from ..storage.ports import AuthStore
from .identities import AuthError
from .tokens import KeyRing, KeySource, SigningKey

# How long a value read from Secrets Manager or SSM is used before it is read again.
VALUE_MAX_AGE = 60.0

T = TypeVar("T")


class TtlCache(Generic[T]):
    """One value, fetched on first use and again once older than ``max_age`` seconds."""

    def __init__(
        self, fetch: Callable[[], T], max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._fetched: float | None = None

    def get(self) -> T:
        with self._lock:
            now = self._clock()
            if self._fetched is None or now - self._fetched >= self._max_age:
                self._value = self._fetch()
                self._fetched = now
            return self._value  # type: ignore[return-value]


def key_ring(current: bytes, previous: bytes | None) -> KeyRing:
    return KeyRing(SigningKey.from_secret(current), SigningKey.from_secret(previous) if previous else None)


def key_from_value(value: str | bytes) -> tuple[bytes, bytes | None]:
    """A secret or parameter holding the key itself, or JSON {"current": …, "previous": …}."""
    parsed: Any = value.decode() if isinstance(value, bytes) else value
    if parsed.lstrip().startswith("{"):
        parsed = json.loads(parsed)
    if isinstance(parsed, dict):
        previous = parsed.get("previous")
        return str(parsed["current"]).encode(), str(previous).encode() if previous else None
    return str(parsed).encode(), None


def secret_value(client: Any, name: str, stage: str | None = None) -> str | bytes:
    """A secret's value (its string, else its binary), at ``stage`` (default: AWSCURRENT)."""
    extra = {"VersionStage": stage} if stage else {}
    answer = client.get_secret_value(SecretId=name, **extra)
    return answer["SecretString"] if "SecretString" in answer else answer["SecretBinary"]


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
        return key_ring(*stored)

    def rotate(self) -> KeyRing:
        """A new current key; the old one verifies until its tokens have expired."""
        ring = self.load()
        if not self._store.put_signing_keys(
            secrets.token_bytes(32), ring.current.secret, replacing=ring.current.secret
        ):
            raise AuthError("the signing keys changed meanwhile; try again")
        return self.load()


class ProcessKeys(KeySource):
    """One signing key per process, made on first use and never stored: `skyport serve`,
    whose table sits in an embedded moto that answers anyone on loopback. The app and
    the local Lambda gateway's handler run in that one process, so they share it; tokens
    end with the process, like the embedded storage."""

    _lock = threading.Lock()
    _ring: KeyRing | None = None

    def load(self) -> KeyRing:
        with ProcessKeys._lock:
            if ProcessKeys._ring is None:
                ProcessKeys._ring = KeyRing(SigningKey.generate())
            return ProcessKeys._ring


class SecretsManagerKeys(KeySource):
    """The signing key is the secret's current version; its previous version (the
    AWSPREVIOUS stage) still verifies. ``client()`` gives the boto3 client."""

    def __init__(self, name: str, client: Callable[[], Any]) -> None:
        self._name = name
        self._client = client
        self._cache = TtlCache(self._read, VALUE_MAX_AGE)

    def _read(self) -> tuple[bytes, bytes | None]:
        from botocore.exceptions import ClientError

        client = self._client()
        current, previous = key_from_value(secret_value(client, self._name))
        if previous is None:
            try:
                previous = key_from_value(secret_value(client, self._name, "AWSPREVIOUS"))[0]
            except ClientError:
                # Never rotated (no AWSPREVIOUS version), or not readable: the previous
                # key is optional, and its absence must not stop the current one working.
                previous = None
        return current, previous

    def load(self) -> KeyRing:
        return key_ring(*self._cache.get())


class ParameterStoreKeys(KeySource):
    """The signing key in an SSM parameter (SecureString): the key, or JSON
    {"current": …, "previous": …} to rotate. ``client()`` gives the boto3 client."""

    def __init__(self, name: str, client: Callable[[], Any]) -> None:
        self._name = name
        self._client = client
        self._cache = TtlCache(self._read, VALUE_MAX_AGE)

    def _read(self) -> tuple[bytes, bytes | None]:
        answer = self._client().get_parameter(Name=self._name, WithDecryption=True)
        return key_from_value(answer["Parameter"]["Value"])

    def load(self) -> KeyRing:
        return key_ring(*self._cache.get())


def key_source(settings: Settings, store: AuthStore, clients: AwsClients) -> KeySource:
    """The key source the settings name: a secret, else a parameter, else this process's
    memory (`skyport serve`), else the table."""
    if settings.signing_key_secret:
        return SecretsManagerKeys(settings.signing_key_secret, lambda: clients.secretsmanager)
    if settings.signing_key_parameter:
        return ParameterStoreKeys(settings.signing_key_parameter, lambda: clients.ssm)
    if settings.signing_key_in_memory:
        return ProcessKeys()
    return TableKeys(store)
