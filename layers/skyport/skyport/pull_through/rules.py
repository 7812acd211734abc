"""Cache rules: which repository prefix pulls through from which upstream registry.

A rule maps a **prefix** (one or more repository-name components: ``hub``, ``ghcr``,
``mirrors/quay``) to an **upstream** registry's base URL: ``hub/library/alpine`` is
``library/alpine`` of the rule's upstream. Docker Hub names of one component are its
official images: ``hub/alpine`` is ``library/alpine`` there (as ECR's pull-through cache
maps them). Prefixes never overlap (neither is a path prefix of the other), so a
repository name belongs to at most one rule.

At most one rule is the **mirror** (``--mirror``, meant for Docker Hub): dockerd's
``registry-mirrors`` asks for unprefixed names (``library/alpine``). Such a name is
answered from the mirror rule's upstream when no rule's prefix covers it and the registry
holds no repository of that name; the content is stored under the rule's prefix
(``hub/library/alpine``), one copy for both ways of asking, and a mirrored pull needs pull
permission on both names (the one asked, which the API checks, and the stored one).

Credentials: a username and where the password is, never the password itself: locally
(``make run``) the NAME of an environment variable the server reads when it calls
upstream; deployed, a Secrets Manager secret (``settings.hook_secrets + "cache/<prefix>"``,
JSON ``{"username", "password"}``) the API and fill functions may read.

Rules are read whole (one Query) and kept per process for ``cache_seconds``, as
immutability rules are (skyport/immutability.py says why that staleness is acceptable).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..distribution_client import is_loopback
from ..errors import Denied, NameInvalid, NameUnknown
from ..outbound_urls import UrlRefused, check_http_url
from ..reference import MAX_NAME_LENGTH, validate_name
from ..rule_snapshot import RuleSnapshot

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PREFIX = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT}){{0,3}}")
# A prefix leaves room for the upstream name under it (names are at most 255 characters).
MAX_PREFIX_LENGTH = 64
MAX_RULES = 50
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_USERNAME = re.compile(r"[^\s:]{1,256}")
DOCKER_HUB = "https://registry-1.docker.io"
# What people write for Docker Hub: its registry API lives on registry-1.docker.io.
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "hub.docker.com"}


class CacheRuleInvalid(ValueError):
    """A rule refused at add: the message says which part and why; nothing was stored."""


class CacheRuleUnknown(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class CacheRule:
    prefix: str
    upstream: str  # base URL: scheme://host[:port], no path
    insecure: bool = False  # http, or https without verifying the certificate
    mirror: bool = False
    username: str | None = None
    password_env: str | None = None  # locally: the environment variable holding the password
    secret: str | None = None  # deployed: the Secrets Manager secret holding both
    created_ms: int = 0

    @property
    def host(self) -> str:
        return urlsplit(self.upstream).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.upstream).scheme

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.secret is not None

    @property
    def is_docker_hub(self) -> bool:
        return self.host == "registry-1.docker.io"

    def upstream_name(self, remainder: str) -> str:
        """The upstream repository of ``remainder`` (the name below the prefix)."""
        if self.is_docker_hub and "/" not in remainder:
            return f"library/{remainder}"
        return remainder

    def fields(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "upstream": self.upstream,
            "insecure": self.insecure,
            "mirror": self.mirror,
            "username": self.username,
            "password_env": self.password_env,
            "secret": self.secret,
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> CacheRule:
        return cls(
            prefix=fields["prefix"],
            upstream=fields["upstream"],
            insecure=bool(fields.get("insecure")),
            mirror=bool(fields.get("mirror")),
            username=fields.get("username") or None,
            password_env=fields.get("password_env") or None,
            secret=fields.get("secret") or None,
            created_ms=int(fields.get("created_ms") or 0),
        )

    def describe(self) -> str:
        login = ""
        if self.username:
            where = f"${self.password_env}" if self.password_env else "Secrets Manager"
            login = f" as {self.username} (password: {where})"
        extras = [word for word, on in (("insecure", self.insecure), ("mirror", self.mirror)) if on]
        return f"{self.prefix}/* pulls through from {self.upstream}{login}" + (
            f" [{', '.join(extras)}]" if extras else ""
        )


@dataclass(frozen=True, slots=True)
class CacheTarget:
    """Where a pull through the cache goes: the repository the content is stored under
    (``repository``), the rule, and the upstream repository."""

    rule: CacheRule
    repository: str
    upstream_name: str
    mirrored: bool = False  # asked under its unprefixed name (registry-mirrors)


class CacheRuleStore(Protocol):
    """The table's side (storage/dynamodb/pull_through.py); rules as plain fields."""

    def add_rule(self, fields: dict[str, Any]) -> bool: ...  # False: the prefix has a rule
    def list_rules(self) -> list[dict[str, Any]]: ...
    def remove_rule(self, prefix: str) -> bool: ...


def validate_prefix(prefix: str) -> str:
    if (
        not isinstance(prefix, str)
        or not 0 < len(prefix) <= MAX_PREFIX_LENGTH
        or not _PREFIX.fullmatch(prefix)
    ):
        raise CacheRuleInvalid(
            f"bad prefix {str(prefix)[:80]!r}: one to four repository-name components (lower-case "
            f"letters, digits, and '.', '_', '-' between them), at most {MAX_PREFIX_LENGTH} "
            "characters: 'hub', 'ghcr', 'mirrors/quay'"
        )
    return prefix


def normalize_upstream(url: str, insecure: bool) -> str:
    """The upstream's base URL (scheme://host[:port]), checked as any URL Skyport calls out
    to (outbound_urls.py); ``docker.io`` (and its other names) is Docker Hub's API host. A
    bare host gets https://. http:// only with ``insecure`` or on loopback."""
    text = url.strip() if isinstance(url, str) else ""
    if text in _DOCKER_HUB_ALIASES or text.rstrip("/") in {f"https://{a}" for a in _DOCKER_HUB_ALIASES}:
        return DOCKER_HUB
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = check_http_url(text, "the upstream URL")
    except UrlRefused as error:
        raise CacheRuleInvalid(str(error)) from None
    if parts.path not in ("", "/") or parts.query:
        raise CacheRuleInvalid(
            "the upstream URL is a registry's base URL (https://host[:port]), without a path or query"
        )
    if parts.scheme == "http" and not insecure and not is_loopback(parts.netloc):
        raise CacheRuleInvalid("an http:// upstream sends images (and credentials) in clear: add --insecure")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def overlapping(a: str, b: str) -> bool:
    return a == b or a.startswith(f"{b}/") or b.startswith(f"{a}/")


class CacheRules:
    """The rules: which one covers a name (for every pull, from a per-process cache), and
    their administration (``skyport cache add|list|remove``)."""

    def __init__(
        self,
        store: CacheRuleStore,
        cache_seconds: float = 30,
        clock: Callable[[], float] = time.monotonic,
        secrets: Any = None,
        secret_prefix: str = "",
        holds_repositories: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        self._snapshot: RuleSnapshot[CacheRule] = RuleSnapshot(self._load, cache_seconds, clock)
        self._secrets = secrets  # a factory of the Secrets Manager client (for add/remove)
        self._secret_prefix = secret_prefix
        # Whether pushed repositories live at or under a prefix (a rule there would hide them).
        self._holds_repositories = holds_repositories

    # --- lookup -----------------------------------------------------------------------

    def rules(self) -> tuple[CacheRule, ...]:
        """Every rule, from the per-process snapshot (skyport/rule_snapshot.py)."""
        return self._snapshot.get()

    def _load(self) -> tuple[CacheRule, ...]:
        return tuple(
            sorted(
                (CacheRule.from_fields(f) for f in self._store.list_rules()),
                key=lambda rule: (rule.created_ms, rule.prefix),
            )
        )

    def forget(self) -> None:
        self._snapshot.forget()

    def target(self, name: str) -> CacheTarget | None:
        """The cache target of repository ``name`` when a rule's prefix covers it; None
        when none does. NAME_INVALID for a name outside the spec's grammar (``..``, ``%2F``
        decoded to ``/``, upper case, too long), NAME_UNKNOWN for the prefix alone."""
        validate_name(name)
        for rule in self.rules():
            if name == rule.prefix:
                raise NameUnknown(
                    {"name": name},
                    message=f"{name} is a pull-through cache prefix: pull {name}/<repository> "
                    f"(e.g. {name}/library/alpine)",
                )
            if name.startswith(f"{rule.prefix}/"):
                remainder = name[len(rule.prefix) + 1 :]
                return CacheTarget(rule, name, rule.upstream_name(remainder))
        return None

    def refuse_client_write(self, name: str, action: str) -> None:
        """DENIED for a client's push or delete into a cache prefix (as ECR refuses them):
        its content is upstream's. Admin and lifecycle deletes do not come this way."""
        try:
            target = self.target(name)
        except NameUnknown:
            # The prefix itself: no repository may live there either.
            raise Denied(
                {"name": name, "action": action},
                message=f"{name} is a pull-through cache prefix: it is read-only to clients",
            ) from None
        if target is not None:
            raise Denied(
                {"name": name, "rule": target.rule.prefix, "action": action},
                message=f"{name} is under the pull-through cache prefix {target.rule.prefix} "
                f"(upstream {target.rule.host}): it is read-only to clients",
            )

    def mirror_target(self, name: str) -> CacheTarget | None:
        """Where an unprefixed ``name`` would be mirrored from (the mirror rule), if the
        stored name stays within the spec's limits; None without a mirror rule."""
        validate_name(name)
        rule = next((rule for rule in self.rules() if rule.mirror), None)
        if rule is None:
            return None
        stored = f"{rule.prefix}/{name}"
        if len(stored) > MAX_NAME_LENGTH:
            raise NameInvalid({"name": name}, message="the name is too long to be mirrored")
        return CacheTarget(rule, stored, rule.upstream_name(name), mirrored=True)

    # --- administration ---------------------------------------------------------------

    def add(
        self,
        prefix: str,
        upstream: str,
        *,
        username: str | None = None,
        password_env: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        mirror: bool = False,
        probe: Callable[[CacheRule], None] | None = None,
    ) -> CacheRule:
        """Check and store a rule. With ``password`` (deployed), it goes to Secrets Manager
        and the rule names the secret; with ``password_env`` alone (locally), the rule names
        the variable. CacheRuleInvalid, nothing stored, when any part is wrong. ``probe``
        (the CLI's: upstream.probe_upstream) is asked last, before anything is stored, and
        refuses the rule by raising CacheRuleInvalid."""
        validate_prefix(prefix)
        base = normalize_upstream(upstream, insecure)
        if (username is None) != (password_env is None):
            raise CacheRuleInvalid("--username and --password-env go together")
        if username is not None and not _USERNAME.fullmatch(username):
            raise CacheRuleInvalid("the username must be 1-256 characters, without spaces or ':'")
        if password_env is not None and not _ENV_NAME.fullmatch(password_env):
            raise CacheRuleInvalid(
                f"--password-env names an environment variable (letters, digits, _): {password_env[:40]!r}"
            )
        existing = [CacheRule.from_fields(f) for f in self._store.list_rules()]
        for rule in existing:
            if overlapping(rule.prefix, prefix):
                raise CacheRuleInvalid(
                    f"prefix {prefix} overlaps the rule for {rule.prefix} ({rule.describe()}): "
                    "a repository name must belong to one rule; remove that one first"
                )
            if mirror and rule.mirror:
                raise CacheRuleInvalid(
                    f"the rule for {rule.prefix} is the mirror already: at most one rule is"
                )
        if len(existing) >= MAX_RULES:
            raise CacheRuleInvalid(f"at most {MAX_RULES} cache rules: remove one first")
        if self._holds_repositories is not None and self._holds_repositories(prefix):
            raise CacheRuleInvalid(
                f"the registry holds repositories at or under {prefix}/: a rule would answer their "
                "names from upstream; choose a prefix nothing is pushed under"
            )
        secret = None
        if password is not None:
            if username is None:
                raise CacheRuleInvalid("a password needs --username")
            secret = f"{self._secret_prefix}cache/{prefix}"
        rule = CacheRule(
            prefix=prefix,
            upstream=base,
            insecure=insecure,
            mirror=mirror,
            username=username,
            password_env=None if secret else password_env,
            secret=secret,
            created_ms=time.time_ns() // 1_000_000,
        )
        if probe is not None:
            probe(rule)
        if secret is not None:
            import json

            from .admin import store_login

            store_login(self._secrets(), secret, json.dumps({"username": username, "password": password}))
        if not self._store.add_rule(rule.fields()):
            raise CacheRuleInvalid(f"a rule for {prefix} exists already")
        self.forget()
        return rule

    def list_rules(self) -> list[CacheRule]:
        rules = [CacheRule.from_fields(f) for f in self._store.list_rules()]
        return sorted(rules, key=lambda rule: (rule.created_ms, rule.prefix))

    def remove(self, prefix: str) -> CacheRule:
        try:
            validate_prefix(prefix)
        except CacheRuleInvalid:
            raise CacheRuleUnknown(f"no cache rule for {str(prefix)[:80]!r}") from None
        rule = next((rule for rule in self.list_rules() if rule.prefix == prefix), None)
        if rule is None or not self._store.remove_rule(prefix):
            raise CacheRuleUnknown(f"no cache rule for {prefix} (`skyport cache list` shows them)")
        if rule.secret:
            from .admin import remove_login

            remove_login(self._secrets(), rule.secret)
        self.forget()
        return rule
