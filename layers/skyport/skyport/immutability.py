"""Tag immutability (issue 12): rules that stop tags from moving, in the manner of ECR's
immutable tags with exclusion filters.

A rule names the repositories it covers by a pattern, in the grants' grammar and with
the grants' matcher (``auth/policy.py``: a repository name, ``*`` matching any run of
characters, ``/`` included: ``team-a/*``, ``*``), and may exclude tags by pattern: each a
tag (distribution-spec ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``) in which ``*`` matches any
run of characters (``latest``, ``dev-*``, ``*-rc*``). Tags are compared case-sensitively,
as the spec compares them. A tag of a covered repository that no exclusion of the rule
matches is *immutable*. With several rules, a tag is immutable when any rule makes it
so: the most protective reading wins, so adding a rule never frees a tag.

What an immutable tag allows, and what it refuses (``ManifestService`` enforces it):

- **created** by a push, once;
- **pushed again with the same digest**: accepted, and nothing moves (CI retries a push
  it is unsure of; ECR accepts it too);
- **moved** to another digest: refused, as ECR refuses the overwrite;
- **deleted by tag** (``DELETE /v2/<name>/manifests/<tag>``): refused;
- **removed with its manifest** (``DELETE /v2/<name>/manifests/<digest>`` of the manifest
  it names, which takes its tags along, distribution-spec "Deleting Manifests"): refused.
  ECR lets an image with immutable tags be deleted, and then the tag may be pushed
  again to anything: a move in two steps. Those who make tags immutable want ``v1.2.3``
  to name one image for good, and a deployment or a rollback to find it; a delete that
  makes the tag vanish, or frees it for another image, breaks both. So deleting stays
  possible only as a deliberate act of an admin: remove the rule (or add an exclusion),
  then delete.

What a tag's manifest *references* is protected too: deleting by digest a child manifest
of an index an immutable tag names, or a config or layer of its image
(``DELETE /v2/<name>/blobs/<digest>`` unlinks it from the repository), is refused the same
way (action ``delete referenced``, ``ManifestService.refuse_deleting_immutable_content``).
The check reads the repository's tags with one paged Query (a tag item carries its
manifest) and the children of indexes, only when a rule covers the repository; it is a
read before the delete, not a condition of it, so a push of a new immutable tag racing a
delete of content it uses can still lose that content (the delete of a manifest by
digest is rare and an admin's act; garbage collection, which does not go through these
deletes, only removes what no manifest references). A push of a tag racing a
delete of the manifest it names is closed: the delete is conditional on the push it read
(``pushed_ms``), and reads the tags again when a push came in between
(storage/dynamodb/manifests.py ``delete_manifest``), so an immutable tag written in
between refuses the delete and a mutable one goes with the manifest.

A refusal is the spec's error envelope, DENIED (403), with a detail naming the rule
(``errors.immutable_tag``); storage is left as it was. The moving of a tag is refused
atomically: whenever a rule covers the tag, the tag's write in the push's transaction
carries a condition (``TAG_NEW_OR_SAME_DIGEST``, storage/dynamodb/manifests.py), so of
two pushes of one new immutable tag with different digests exactly one wins.

Rules live in the table (``IMMUTABILITY / <rule id>``, storage/keys.py), written by
``skyport immutability add|list|remove``. Each process reads them all with one Query and
keeps them for ``cache_seconds`` (SKYPORT_IMMUTABILITY_CACHE_SECONDS, 30 by default): a
push costs no extra read, rules or not. So a new rule is enforced by a running instance
(a warm Lambda) within that time, and a removed one stops refusing within it. That is
acceptable: rules change seldom, by an admin, ahead of the releases they protect; the
cost of staleness is a half-minute window after a rule is added, and refusals continue a
little after one is removed (the safe side). Reading the rules on every push would add a
DynamoDB read (latency and cost) to every push of every registry, rules or not.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .auth.policy import InvalidName, pattern_matches, validate_pattern
from .rule_snapshot import RuleSnapshot

# Bounds that keep rule matching cheap on every push, and the rule set one small Query.
MAX_RULES = 100
MAX_EXCLUSIONS = 20
# A tag pattern is a tag with '*': at most as long as a tag (distribution-spec: 128).
_TAG_PATTERN = re.compile(r"[A-Za-z0-9_*][A-Za-z0-9._*-]{0,127}")
_RULE_ID = re.compile(r"im-[0-9a-f]{8}")
DEFAULT_CACHE_SECONDS = 30


class InvalidRule(ValueError):
    """A rule refused at add: a bad pattern, too many exclusions or rules, a duplicate."""


class RuleNotFound(LookupError):
    pass


def validate_tag_pattern(pattern: str) -> str:
    """An exclusion: a tag in which '*' matches any characters; ASCII only (a Unicode
    digit is no tag character), at most 128 characters, no '**'."""
    if not isinstance(pattern, str) or not _TAG_PATTERN.fullmatch(pattern) or "**" in pattern:
        raise InvalidRule(
            f"invalid tag pattern {str(pattern)[:70]!r}: a tag (letters, digits, '_', '.', '-'; "
            "not starting with '.' or '-'; at most 128 characters) where '*' matches any "
            "characters: 'latest', 'dev-*'"
        )
    return pattern


def validate_repositories(pattern: str) -> str:
    try:
        return validate_pattern(pattern)
    except InvalidName as error:
        raise InvalidRule(str(error)) from None


@dataclass(frozen=True, slots=True)
class ImmutabilityRule:
    id: str
    repositories: str  # a repository pattern, the grants' grammar
    exclude: tuple[str, ...] = ()  # tag patterns that stay mutable
    created_ms: int = 0  # milliseconds since the epoch: rules are checked in this order

    def covers_repository(self, repository: str) -> bool:
        return pattern_matches(self.repositories, repository)

    def covers(self, repository: str, tag: str) -> bool:
        """Whether this rule makes ``tag`` of ``repository`` immutable."""
        return self.covers_repository(repository) and not any(
            pattern_matches(excluded, tag) for excluded in self.exclude
        )

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repositories": self.repositories,
            "exclude": list(self.exclude),
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ImmutabilityRule:
        return cls(
            id=fields["id"],
            repositories=fields["repositories"],
            exclude=tuple(fields.get("exclude") or ()),
            created_ms=int(fields.get("created_ms") or 0),
        )

    def describe(self) -> str:
        excluded = f", except tags {', '.join(self.exclude)}" if self.exclude else ""
        return f"tags of {self.repositories} are immutable{excluded}"


class ImmutabilityStore(Protocol):
    """The table's side (storage/dynamodb/immutability.py); rules as plain fields."""

    def create_rule(self, fields: dict[str, Any]) -> bool: ...  # False: the id exists
    def list_rules(self) -> list[dict[str, Any]]: ...
    def delete_rule(self, rule_id: str) -> bool: ...  # False: no such rule


def parse_exclusions(values: Iterable[str]) -> tuple[str, ...]:
    """Exclusions from ``--exclude`` (repeatable, each comma-separated), validated, in
    order, without repeats."""
    chosen: list[str] = []
    for value in values:
        for pattern in (part.strip() for part in value.split(",")):
            if pattern and validate_tag_pattern(pattern) not in chosen:
                chosen.append(pattern)
    if len(chosen) > MAX_EXCLUSIONS:
        raise InvalidRule(f"at most {MAX_EXCLUSIONS} tag exclusions in one rule, not {len(chosen)}")
    return tuple(chosen)


class ImmutabilityRules:
    """The rules: which one covers a tag (for every push and delete, from a per-process
    cache), and their administration (the `skyport immutability` commands)."""

    def __init__(
        self,
        store: ImmutabilityStore,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._snapshot: RuleSnapshot[ImmutabilityRule] = RuleSnapshot(self._load, cache_seconds, clock)

    # --- enforcement --------------------------------------------------------------------

    def rules(self) -> tuple[ImmutabilityRule, ...]:
        """Every rule, from the per-process snapshot (skyport/rule_snapshot.py: read at most
        once per ``cache_seconds``; a failed refresh keeps the rules known before)."""
        return self._snapshot.get()

    def _load(self) -> tuple[ImmutabilityRule, ...]:
        return tuple(
            sorted(
                (ImmutabilityRule.from_fields(fields) for fields in self._store.list_rules()),
                key=lambda rule: (rule.created_ms, rule.id),
            )
        )

    def covering(self, repository: str, tag: str) -> ImmutabilityRule | None:
        """The first rule (by creation time) that makes ``tag`` of ``repository``
        immutable; None if the tag may move."""
        return next((rule for rule in self.rules() if rule.covers(repository, tag)), None)

    def guard(self, repository: str) -> Callable[[str], ImmutabilityRule | None] | None:
        """For a delete by digest: a function giving the rule that covers a tag of
        ``repository``; None when no rule covers the repository at all (nothing to check)."""
        relevant = [rule for rule in self.rules() if rule.covers_repository(repository)]
        if not relevant:
            return None
        return lambda tag: next((rule for rule in relevant if rule.covers(repository, tag)), None)

    def forget(self) -> None:
        """Drop the cache: the next lookup reads the rules (after a change made here)."""
        self._snapshot.forget()

    # --- administration -------------------------------------------------------------------

    def add(self, repositories: str, exclude: Sequence[str] = ()) -> ImmutabilityRule:
        """A new rule. Refused (InvalidRule) when a pattern is invalid, when an identical
        rule exists (same repositories, same exclusions), or past MAX_RULES."""
        validate_repositories(repositories)
        exclusions = parse_exclusions(exclude)
        existing = [ImmutabilityRule.from_fields(fields) for fields in self._store.list_rules()]
        for rule in existing:
            if rule.repositories == repositories and set(rule.exclude) == set(exclusions):
                raise InvalidRule(f"rule {rule.id} is the same: {rule.describe()}")
        if len(existing) >= MAX_RULES:
            raise InvalidRule(f"at most {MAX_RULES} immutability rules: remove one first")
        rule = ImmutabilityRule(
            id=f"im-{secrets.token_hex(4)}",
            repositories=repositories,
            exclude=exclusions,
            created_ms=time.time_ns() // 1_000_000,
        )
        if not self._store.create_rule(rule.fields()):
            raise InvalidRule("rule id taken (a one in four billion chance): add it again")
        self.forget()
        return rule

    def list_rules(self) -> list[ImmutabilityRule]:
        rules = [ImmutabilityRule.from_fields(fields) for fields in self._store.list_rules()]
        return sorted(rules, key=lambda rule: (rule.created_ms, rule.id))

    def remove(self, rule_id: str) -> ImmutabilityRule:
        if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
            raise RuleNotFound(f"no rule {str(rule_id)[:40]!r}: rule ids look like im-0123abcd")
        rule = next((rule for rule in self.list_rules() if rule.id == rule_id), None)
        if rule is None or not self._store.delete_rule(rule_id):
            raise RuleNotFound(f"no rule {rule_id} (`skyport immutability list` shows them)")
        self.forget()
        return rule
