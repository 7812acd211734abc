"""Who may do what: identities, scopes, repository patterns, and the decisions.

Scopes are the Docker token spec's ``<type>:<name>:<actions>``: on repositories
``repository:<name>:pull|push|delete|*``, and ``registry:catalog:*`` for the
catalog. A grant gives actions on every repository matching a pattern (``*``
matches any run of characters, ``/`` included: ``team-a/*`` is every repository
under ``team-a/``) to a principal: an identity by name, ``group:<name>``, or
``*`` (everyone, anonymous callers too: a public repository, pull only).

Pushing and deleting imply pulling. An admin may do everything. The catalog is
open to every caller and lists only the repositories the caller may pull.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

PULL, PUSH, DELETE, ALL = "pull", "push", "delete", "*"
REPOSITORY_ACTIONS = frozenset((PULL, PUSH, DELETE))
REPOSITORY, REGISTRY, CATALOG = "repository", "registry", "catalog"
EVERYONE = "*"
GROUP_PREFIX = "group:"
ROBOT_PREFIX = "robot+"
# A token request may name this many scopes at most (a token stays small).
MAX_SCOPES = 64

_IDENTITY_NAME = re.compile(r"^(robot\+)?[a-z0-9][a-z0-9._-]{0,62}$")
_GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_PATTERN = re.compile(r"^[a-z0-9*][a-z0-9._/*-]{0,254}$")


class InvalidName(ValueError):
    pass


def validate_identity_name(name: str) -> str:
    if not _IDENTITY_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid name {name[:70]!r}: lower-case letters, digits, '.', '_', '-' "
            "(robots: robot+<name>), at most 63 characters"
        )
    return name


def validate_group(name: str) -> str:
    if not _GROUP_NAME.fullmatch(name):
        raise InvalidName(f"invalid group {name[:70]!r}")
    return name


def validate_pattern(pattern: str) -> str:
    if not _PATTERN.fullmatch(pattern) or "**" in pattern or "//" in pattern:
        raise InvalidName(
            f"invalid repository pattern {pattern[:70]!r}: a repository name, "
            "'*' matching any characters ('team-a/*', '*')"
        )
    return pattern


def validate_principal(principal: str) -> str:
    if principal == EVERYONE:
        return principal
    if principal.startswith(GROUP_PREFIX):
        validate_group(principal[len(GROUP_PREFIX) :])
        return principal
    return validate_identity_name(principal)


def normalize_actions(actions: Iterable[str]) -> frozenset[str]:
    """Granted actions: ``*`` is all of them; push and delete imply pull."""
    out = set()
    for action in actions:
        if action == ALL:
            out |= REPOSITORY_ACTIONS
        elif action in REPOSITORY_ACTIONS:
            out.add(action)
        else:
            raise InvalidName(f"unknown action {action[:20]!r}: pull, push, delete or *")
    if out & {PUSH, DELETE}:
        out.add(PULL)
    return frozenset(out)


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern``, each '*' matching any run of characters.

    Linear, without a regex: translated to one (``.*`` per '*'), a pattern such as
    ``*a*a*a*a*b`` backtracked for seconds on a 200-character name, on every request. The
    text before the first '*' must begin the name, the text after the last must end it,
    and each piece between is found leftmost, in order, in what lies between (taking the
    leftmost never leaves less room for the pieces after it)."""
    first, *middle_and_last = pattern.split("*")
    if not middle_and_last:
        return name == pattern
    *middle, last = middle_and_last
    end = len(name) - len(last)
    if end < len(first) or not name.startswith(first) or not name.endswith(last):
        return False
    position = len(first)
    for piece in middle:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


# --- identities and grants ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller; ``name`` is empty for an anonymous one."""

    name: str
    kind: str = "user"  # user | robot | anonymous
    admin: bool = False
    groups: tuple[str, ...] = ()
    generation: int = 0  # bumped when the password or secret changes
    identity_id: str = ""  # new for each creation of an identity of this name

    @property
    def anonymous(self) -> bool:
        return not self.name

    @property
    def principals(self) -> frozenset[str]:
        names = {EVERYONE}
        if self.name:
            names.add(self.name)
            names.update(f"{GROUP_PREFIX}{group}" for group in self.groups)
        return frozenset(names)


ANONYMOUS = Identity("", "anonymous")


@dataclass(frozen=True, slots=True)
class Grant:
    pattern: str
    principal: str
    actions: frozenset[str]


# --- scopes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from ``scope`` parameters; one parameter may hold several, space-separated
    (the OAuth2 form). Malformed ones are dropped: they are granted nothing anyway."""
    scopes: list[Scope] = []
    for value in values:
        for text in value.split():
            type_, sep, rest = text.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not name:
                continue
            # `repository(plugin)`: a resource class, which names no other resource.
            type_ = type_.split("(", 1)[0]
            scopes.append(Scope(type_, name, tuple(a for a in actions.split(",") if a)))
            if len(scopes) >= MAX_SCOPES:
                return scopes
    return scopes


def challenge_scope(type_: str, name: str, action: str) -> str:
    """The scope a 401 challenge names for an action (push also asks for pull, as docker does)."""
    if type_ == REGISTRY:
        return f"{REGISTRY}:{CATALOG}:*"
    return f"{REPOSITORY}:{name}:{'pull,push' if action == PUSH else action}"


# --- decisions ------------------------------------------------------------------------


class Access(Protocol):
    """What one request may do: the one protocol the core's services take (the catalog
    filter, the mount source check, the upload owner). ``Policy`` and ``TokenAccess``
    are ones. ``subject`` is the identity's name ('' when anonymous)."""

    subject: str

    def allows(self, type_: str, name: str, action: str) -> bool: ...
    def may_pull(self, repository: str) -> bool: ...
    @property
    def pulls_everything(self) -> bool: ...


@dataclass(slots=True)
class Policy:
    """Every permission of one identity, from the registry's grants."""

    identity: Identity
    grants: list[Grant]
    _cache: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.identity.name

    def actions(self, repository: str) -> frozenset[str]:
        if self.identity.admin:
            return REPOSITORY_ACTIONS
        cached = self._cache.get(repository)
        if cached is not None:
            return cached
        principals = self.identity.principals
        out: set[str] = set()
        for grant in self.grants:
            if grant.principal in principals and pattern_matches(grant.pattern, repository):
                # `*` (everyone) grants pull only, whatever was stored.
                out |= grant.actions if grant.principal != EVERYONE else {PULL} & grant.actions
        if out & {PUSH, DELETE}:
            out.add(PULL)
        result = frozenset(out)
        self._cache[repository] = result
        return result

    def allows(self, type_: str, name: str, action: str) -> bool:
        if type_ == REGISTRY:
            return name == CATALOG
        return type_ == REPOSITORY and action in self.actions(name)

    def may_pull(self, repository: str) -> bool:
        return PULL in self.actions(repository)

    @property
    def pulls_everything(self) -> bool:
        if self.identity.admin:
            return True
        principals = self.identity.principals
        return any(g.pattern == "*" and PULL in g.actions and g.principal in principals for g in self.grants)

    def grant(self, scopes: Iterable[Scope]) -> list[dict[str, Any]]:
        """The token's ``access`` claim: what was asked for, intersected with what is allowed."""
        granted: dict[tuple[str, str], set[str]] = {}
        for scope in scopes:
            if scope.type == REGISTRY and scope.name == CATALOG and ALL in scope.actions:
                granted.setdefault((REGISTRY, CATALOG), set()).add(ALL)
            elif scope.type == REPOSITORY and _is_repository_name(scope.name):
                asked = set(scope.actions)
                if ALL in asked:
                    asked |= REPOSITORY_ACTIONS
                allowed = (asked & REPOSITORY_ACTIONS) & self.actions(scope.name)
                if allowed:
                    granted.setdefault((REPOSITORY, scope.name), set()).update(allowed)
        return [
            {"type": type_, "name": name, "actions": sorted(actions)}
            for (type_, name), actions in granted.items()
        ]


def _is_repository_name(name: str) -> bool:
    from ..errors import NameInvalid
    from ..reference import validate_name

    try:
        validate_name(name)
    except NameInvalid:
        return False
    return True


class TokenAccess:
    """What a bearer token grants: its ``access`` claim, nothing more."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.subject: str = claims.get("sub") or ""
        self._granted: dict[tuple[str, str], frozenset[str]] = {}
        for entry in claims.get("access") or []:
            if not isinstance(entry, dict):
                continue
            type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if isinstance(type_, str) and isinstance(name, str) and isinstance(actions, list):
                key = (type_, name)
                self._granted[key] = self._granted.get(key, frozenset()) | frozenset(
                    a for a in actions if isinstance(a, str)
                )

    def allows(self, type_: str, name: str, action: str) -> bool:
        actions = self._granted.get((type_, name), frozenset())
        return action in actions or (type_ == REGISTRY and ALL in actions)

    def may_pull(self, repository: str) -> bool:
        return self.allows(REPOSITORY, repository, PULL)

    @property
    def pulls_everything(self) -> bool:
        return False
