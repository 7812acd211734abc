"""The first admin of a deployed registry: its credentials are a Secrets Manager secret
``{"username": …, "password": …}`` (template.yaml's AdminSecret, named by
SKYPORT_ADMIN_SECRET), and the identity is created on its first login, once in the
registry's life (a conditional write: deleted later, it is not created again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..storage.clients import AwsClients
from ..storage.ports import AuthStore, IdentityRecord
from . import passwords
from .keys import VALUE_MAX_AGE, TtlCache, secret_value

# (username, password), or None when there is no first admin to create.
Credentials = Callable[[], tuple[str, str] | None]


def secret_credentials(name: str, client: Callable[[], Any]) -> Credentials:
    """The first admin's credentials, read from secret ``name`` (kept VALUE_MAX_AGE s)."""

    def read() -> tuple[str, str] | None:
        value = json.loads(secret_value(client(), name))
        if isinstance(value, dict) and value.get("username") and value.get("password"):
            return str(value["username"]), str(value["password"])
        return None

    return TtlCache(read, VALUE_MAX_AGE).get


def admin_credentials(settings: Settings, clients: AwsClients) -> Credentials | None:
    """Where the settings say the first admin's credentials are (None: nowhere)."""
    if not settings.admin_secret:
        return None
    return secret_credentials(settings.admin_secret, lambda: clients.secretsmanager)


def bootstrap_admin(
    store: AuthStore, credentials: Credentials, username: str, now: int
) -> IdentityRecord | None:
    """The first admin's record when ``username`` is its name (created now if it never
    was); None otherwise."""
    found = credentials()
    if not found or found[0] != username:
        return None
    name, password = found
    record = IdentityRecord(name, "user", passwords.hash_password(password), admin=True, created_at=now)
    store.bootstrap_admin(record)
    return store.get_identity(username)
