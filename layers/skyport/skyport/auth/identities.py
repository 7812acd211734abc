"""Identity admin: users, robot accounts, grants and public repositories (what the
`skyport user|robot|grant|revoke|grants|repo` commands do, on the registry's table).

Passwords and robot secrets are stored as scrypt hashes (passwords.py); a robot's
secret is generated here, shown once and never stored. Changing a password or a
secret bumps the identity's generation, which ends its refresh tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..storage.ports import AuthStore, IdentityRecord
from . import passwords
from . import policy as access
from .policy import Grant, Identity


class AuthError(ValueError):
    """An admin operation that cannot be done (unknown identity, bad name, ...)."""


def identity_of(record: IdentityRecord) -> Identity:
    return Identity(
        record.name,
        record.kind,
        record.admin,
        record.groups,
        record.generation,
        record.identity_id,
    )


class IdentityAdmin:
    """Creates, changes and removes identities and grants, in the registry's table."""

    def __init__(self, store: AuthStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

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
        return identity_of(record)

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
        return identity_of(record), secret

    def set_password(self, name: str, password: str) -> None:
        """A new password (users) or secret; refresh tokens issued before stop working."""
        _check_password(password)
        if not self._store.update_identity(name, password_hash=passwords.hash_password(password)):
            raise AuthError(f"no such user or robot: {name}")
        self._store.clear_failed_logins(name)  # a new password ends every lockout

    def rotate_robot(self, name: str) -> str:
        record = self._require(
            name if name.startswith(access.ROBOT_PREFIX) else f"{access.ROBOT_PREFIX}{name}"
        )
        if record.kind != "robot":
            raise AuthError(f"{record.name} is not a robot account")
        secret = passwords.new_secret()
        self._store.update_identity(record.name, password_hash=passwords.hash_password(secret))
        return secret

    def update(self, name: str, *, admin: bool | None = None, groups: Iterable[str] | None = None) -> None:
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
