"""Retention rules (issue 12): what to keep of each repository, in the spirit of ECR's
lifecycle policies and zot's retention, and the run that deletes the rest.

A rule names the repositories it covers by a pattern, in the grants' grammar and with
the grants' matcher (``auth/policy.py``: ``team-a/*``, ``*``), and holds any of:

- ``keep_last N``: keep the newest N *tagged images* of the repository, by ``pushed_ms``
  (when the manifest was last pushed, by tag or digest). Tagged images are the manifests
  a tag names that are neither a child of an index in the repository nor a referrer of a
  manifest in it: children and referrers go with their parent (below) and are not
  counted, and neither are untagged manifests (as ECR's ``imageCountMoreThan`` with
  ``tagStatus: tagged``), so a burst of untagged builds never pushes releases out;
- ``keep_pushed_within P``: keep what was pushed within P;
- ``keep_pulled_within P``: keep what was pulled within P (last-pull records,
  skyport/pulls.py: accurate to SKYPORT_PULL_RECORD_SECONDS; never pulled: not kept);
- ``keep_tags PATTERN...``: keep what a tag matching one of the patterns names (a tag
  where ``*`` matches any characters, as immutability's exclusions);
- ``untagged_after P``: an untagged manifest is kept for P after its push, then goes.

How conditions and rules combine: **a manifest is kept if any keep condition of any rule
covering its repository keeps it**; it goes only when at least one covering rule
*touches* it and none keeps it. A rule with a keep condition (the first four) touches
every manifest of its repositories: what none of its conditions keeps, it would delete.
A rule with only ``untagged_after`` touches only untagged manifests (tagged ones it
leaves alone). In a rule with both, ``untagged_after`` gives an untagged manifest that
much time on top of the keep conditions. So a new rule never frees what another rule
keeps; it may only touch what no rule touched before (and a keep condition added to an
untagged-only rule makes it touch tagged manifests too).

Never deleted, whatever the rules say (the run reports each as kept, with the reason):

- a manifest pushed within GRACE_SECONDS (an hour) of the evaluation: a push in flight
  (a multi-platform push sends the platform manifests, untagged, before the index that
  names them) must not lose its first manifests before the last arrives;
- a manifest an immutable tag names (skyport/immutability.py: "kept: immutable");
- a child of a kept index, and a referrer (signature, SBOM) whose subject is kept, and
  so on down (an index's children's referrers too).

Deletions go through the normal manifest delete (``ManifestService.delete``): its tags
and its last-pull record go with it, the stream carries ``manifest.deleted`` and
``tag.deleted`` events as for any delete, and the repository leaves the catalog with
its last manifest. Each delete is conditional on the manifest not having been pushed
since the evaluation (``MANIFEST_UNCHANGED_SINCE``, storage/dynamodb/manifests.py: every
push naming the manifest, a new tag for it included, rewrites its pushed_ms), so a push
racing a run always wins: the run reports the manifest as "skipped: pushed again (or
deleted) since the evaluation". Indexes are deleted before the manifests they name.

One race stays open, as with immutability: an index pushed after the evaluation that
names an existing manifest without pushing that manifest again does not change the
child's pushed_ms, and the child may go while the index stays. A client copying a
multi-platform image pushes each child before the index (which rewrites it); a tool
composing an index from digests already in the repository may not. The registry
keeps no reverse index of references to check against (garbage collection, issue 12,
may add one; this check should then use it).

Blobs are not deleted by retention: a manifest's layers and config stay until garbage
collection finds no manifest references them and reclaims them (``skyport gc``).

A run evaluates one repository at a time (its manifests, tags and last-pull records,
read with paged queries; nothing of other repositories held), in catalog order. The
scheduled function stops when its time runs short and saves where it stopped (``RETENTION
/ CURSOR``); the next invocation resumes after that repository. Last-pull records left
without a manifest (a GET racing a delete) are removed as their repository is evaluated.

Times: every age is measured from the evaluation's "as of" time (now, or ``--as-of`` to
see what a later run would do; a ``run --as-of`` in the future also shortens the grace).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from . import media_types
from .auth.policy import InvalidName, pattern_matches, validate_pattern
from .errors import ManifestUnknown, RegistryError
from .immutability import ImmutabilityRules, validate_tag_pattern
from .immutability import InvalidRule as InvalidTagPattern
from .manifests import ManifestService, parse_manifest
from .pulls import PullStore

MAX_RULES = 100
MAX_TAG_PATTERNS = 20
MAX_KEEP_LAST = 10_000
# Periods: a number of hours, days or weeks; from an hour to ten years.
_PERIOD = re.compile(r"([0-9]{1,6})([hdw])")
_UNIT_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}
MIN_PERIOD_SECONDS = 3600
MAX_PERIOD_SECONDS = 3650 * 86400
GRACE_SECONDS = 3600
_RULE_ID = re.compile(r"rt-[0-9a-f]{8}")
# The scheduled run stops starting repositories when less than this is left.
STOP_MARGIN_SECONDS = 120


class InvalidRule(ValueError):
    """A rule refused at add: a bad pattern, count or period, no condition, a duplicate."""


class RuleNotFound(LookupError):
    pass


def parse_count(value: Any) -> int:
    """``keep_last``: ASCII digits, 1 to MAX_KEEP_LAST (int() would take '١٢' or ' 3')."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise InvalidRule(f"keep-last must be a number from 1 to {MAX_KEEP_LAST}, not {str(value)[:20]!r}")
    count = int(text)
    if not 1 <= count <= MAX_KEEP_LAST:
        raise InvalidRule(f"keep-last must be a number from 1 to {MAX_KEEP_LAST}, not {count}")
    return count


def parse_period(value: Any, option: str = "period") -> int:
    """A period: ASCII digits and a unit, h (hours), d (days) or w (weeks): '12h', '30d',
    '2w'; from an hour to ten years. Seconds."""
    match = _PERIOD.fullmatch(value) if isinstance(value, str) and value.isascii() else None
    if match is None:
        raise InvalidRule(
            f"{option} must be a number and a unit, h (hours), d (days) or w (weeks), "
            f"such as 30d: not {str(value)[:20]!r}"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_PERIOD_SECONDS <= seconds <= MAX_PERIOD_SECONDS:
        raise InvalidRule(f"{option} must be from 1h to 3650d, not {value}")
    return seconds


def _optional_period(value: Any, option: str) -> int | None:
    return parse_period(value, option) if value is not None else None


def format_period(seconds: int) -> str:
    for unit in ("w", "d", "h"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def _tag_patterns(values: Iterable[str]) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in values:
        for pattern in (part.strip() for part in str(value).split(",")):
            if not pattern:
                raise InvalidRule(
                    f"empty tag pattern in {str(value)[:70]!r}: a tag, '*' matching any characters"
                )
            try:
                validate_tag_pattern(pattern)
            except InvalidTagPattern as error:
                raise InvalidRule(str(error)) from None
            if pattern not in chosen:
                chosen.append(pattern)
    if len(chosen) > MAX_TAG_PATTERNS:
        raise InvalidRule(f"at most {MAX_TAG_PATTERNS} tag patterns in one rule, not {len(chosen)}")
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    id: str
    repositories: str
    keep_last: int | None = None
    keep_pushed_within: int | None = None  # seconds
    keep_pulled_within: int | None = None  # seconds
    keep_tags: tuple[str, ...] = ()
    untagged_after: int | None = None  # seconds
    created_ms: int = 0

    @property
    def has_keep_conditions(self) -> bool:
        return bool(self.keep_last or self.keep_pushed_within or self.keep_pulled_within or self.keep_tags)

    def covers(self, repository: str) -> bool:
        return pattern_matches(self.repositories, repository)

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repositories": self.repositories,
            "keep_last": self.keep_last,
            "keep_pushed_within": self.keep_pushed_within,
            "keep_pulled_within": self.keep_pulled_within,
            "keep_tags": list(self.keep_tags),
            "untagged_after": self.untagged_after,
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> RetentionRule:
        return cls(
            id=fields["id"],
            repositories=fields["repositories"],
            keep_last=fields.get("keep_last"),
            keep_pushed_within=fields.get("keep_pushed_within"),
            keep_pulled_within=fields.get("keep_pulled_within"),
            keep_tags=tuple(fields.get("keep_tags") or ()),
            untagged_after=fields.get("untagged_after"),
            created_ms=int(fields.get("created_ms") or 0),
        )

    def describe(self) -> str:
        parts = []
        if self.keep_last:
            parts.append(f"keep the newest {self.keep_last}")
        if self.keep_pushed_within:
            parts.append(f"keep what was pushed within {format_period(self.keep_pushed_within)}")
        if self.keep_pulled_within:
            parts.append(f"keep what was pulled within {format_period(self.keep_pulled_within)}")
        if self.keep_tags:
            parts.append(f"keep tags {', '.join(self.keep_tags)}")
        if self.untagged_after:
            parts.append(f"untagged manifests go after {format_period(self.untagged_after)}")
        return f"in {self.repositories}: {'; '.join(parts)}"

    def same_as(self, other: RetentionRule) -> bool:
        mine, theirs = self.fields(), other.fields()
        for fields in (mine, theirs):
            fields.pop("id"), fields.pop("created_ms")
            fields["keep_tags"] = sorted(fields["keep_tags"])
        return mine == theirs


class RetentionStore(Protocol):
    """The table's side (storage/dynamodb/retention.py)."""

    def create_rule(self, fields: dict[str, Any]) -> bool: ...  # False: the id exists
    def list_rules(self) -> list[dict[str, Any]]: ...
    def delete_rule(self, rule_id: str) -> bool: ...  # False: no such rule
    def get_cursor(self) -> str | None: ...
    def set_cursor(self, repository: str | None) -> None: ...
    def repositories(self, after: str | None = None) -> Iterator[str]: ...
    def manifests(self, repository: str) -> Iterator[dict[str, Any]]: ...
    def tags(self, repository: str) -> Iterator[tuple[str, str]]: ...


@dataclass(slots=True)
class Decision:
    """What an evaluation says of one manifest, and, after a run, what became of it."""

    digest: str
    tags: list[str]
    pushed_ms: int
    last_pulled_ms: int | None
    delete: bool
    reasons: list[str]  # why it is kept, or why it goes
    outcome: str | None = None  # after a run: deleted, skipped: ..., failed: ...


@dataclass(slots=True)
class RepositoryPlan:
    repository: str
    rules: list[str]
    decisions: list[Decision] = field(default_factory=list)
    stray_pull_records: list[str] = field(default_factory=list)

    @property
    def deletions(self) -> list[Decision]:
        return [decision for decision in self.decisions if decision.delete]

    @property
    def kept(self) -> list[Decision]:
        return [decision for decision in self.decisions if not decision.delete]


@dataclass(slots=True)
class RetentionReport:
    as_of_ms: int
    dry_run: bool
    repositories: list[RepositoryPlan] = field(default_factory=list)
    complete: bool = True  # False: the scheduled run stopped early and saved its place

    def totals(self) -> dict[str, int]:
        decisions = [d for plan in self.repositories for d in plan.decisions]
        return {
            "repositories": len(self.repositories),
            "manifests": len(decisions),
            "to_delete": sum(d.delete for d in decisions),
            "kept": sum(not d.delete for d in decisions),
            "deleted": sum(d.outcome == "deleted" for d in decisions),
            "skipped": sum(bool(d.outcome and d.outcome.startswith("skipped")) for d in decisions),
            "failed": sum(bool(d.outcome and d.outcome.startswith("failed")) for d in decisions),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of_ms": self.as_of_ms,
            "dry_run": self.dry_run,
            "complete": self.complete,
            "totals": self.totals(),
            "repositories": [asdict(plan) for plan in self.repositories],
        }


def _ago(as_of_ms: int, then_ms: int) -> str:
    hours = max(as_of_ms - then_ms, 0) / 3_600_000
    return f"{hours:.1f}h ago" if hours < 48 else f"{hours / 24:.0f}d ago"


class RetentionService:
    """The rules' administration (`skyport retention add|list|remove`), the evaluation of
    a repository (`preview`), and the run that applies it (`run`, the scheduled function)."""

    def __init__(
        self,
        store: RetentionStore,
        pulls: PullStore,
        manifests: ManifestService,
        immutability: ImmutabilityRules,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._pulls = pulls
        self._manifests = manifests
        self._immutability = immutability
        self._clock = clock

    # --- administration -------------------------------------------------------------------

    def add(
        self,
        repositories: str,
        keep_last: Any = None,
        keep_pushed_within: Any = None,
        keep_pulled_within: Any = None,
        keep_tags: Sequence[str] = (),
        untagged_after: Any = None,
    ) -> RetentionRule:
        """A new rule, validated (InvalidRule: nothing stored)."""
        if not isinstance(repositories, str) or not repositories:
            raise InvalidRule("a rule needs a repository pattern ('team-a/*', '*')")
        try:
            validate_pattern(repositories)
        except InvalidName as error:
            raise InvalidRule(str(error)) from None
        rule = RetentionRule(
            id=f"rt-{secrets.token_hex(4)}",
            repositories=repositories,
            keep_last=parse_count(keep_last) if keep_last is not None else None,
            keep_pushed_within=_optional_period(keep_pushed_within, "keep-pushed-within"),
            keep_pulled_within=_optional_period(keep_pulled_within, "keep-pulled-within"),
            keep_tags=_tag_patterns(keep_tags or ()),
            untagged_after=_optional_period(untagged_after, "untagged-after"),
            created_ms=time.time_ns() // 1_000_000,
        )
        if not rule.has_keep_conditions and not rule.untagged_after:
            raise InvalidRule(
                "a rule needs at least one of keep-last, keep-pushed-within, keep-pulled-within, "
                "keep-tags, untagged-after"
            )
        existing = self.list_rules()
        for other in existing:
            if other.same_as(rule):
                raise InvalidRule(f"rule {other.id} is the same: {other.describe()}")
        if len(existing) >= MAX_RULES:
            raise InvalidRule(f"at most {MAX_RULES} retention rules: remove one first")
        if not self._store.create_rule(rule.fields()):
            raise InvalidRule("rule id taken (a one in four billion chance): add it again")
        return rule

    def list_rules(self) -> list[RetentionRule]:
        rules = [RetentionRule.from_fields(fields) for fields in self._store.list_rules()]
        return sorted(rules, key=lambda rule: (rule.created_ms, rule.id))

    def remove(self, rule_id: str) -> RetentionRule:
        if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
            raise RuleNotFound(f"no rule {str(rule_id)[:40]!r}: rule ids look like rt-0123abcd")
        rule = next((rule for rule in self.list_rules() if rule.id == rule_id), None)
        if rule is None or not self._store.delete_rule(rule_id):
            raise RuleNotFound(f"no rule {rule_id} (`skyport retention list` shows them)")
        return rule

    # --- evaluation -----------------------------------------------------------------------

    def _children(self, repository: str, digest: str) -> list[str]:
        """The manifests an index names (its body read: inline, or from S3)."""
        _, body = self._manifests.fetch(repository, digest)
        return parse_manifest(body or b"", None).manifests

    def evaluate(self, repository: str, rules: Sequence[RetentionRule], as_of_ms: int) -> RepositoryPlan:
        """What the rules covering ``repository`` would delete and keep, and why (no write)."""
        rules = [rule for rule in rules if rule.covers(repository)]
        plan = RepositoryPlan(repository, [rule.id for rule in rules])
        manifests = {m["digest"]: m for m in self._store.manifests(repository)}
        tags: dict[str, list[str]] = {}
        for tag, digest in self._store.tags(repository):
            if digest in manifests:
                tags.setdefault(digest, []).append(tag)
        pulls: dict[str, int] = {}
        for digest, pulled_ms in self._pulls.last_pulls(repository):
            if digest in manifests:
                pulls[digest] = pulled_ms
            else:
                plan.stray_pull_records.append(digest)
        children: dict[str, list[str]] = {}
        child_of: set[str] = set()
        unreadable: str | None = None
        for digest, manifest in manifests.items():
            if manifest["media_type"] in media_types.INDEXES:
                try:
                    named = [child for child in self._children(repository, digest) if child in manifests]
                except ManifestUnknown:
                    named = []  # deleted since the query: it protects nothing
                except Exception as error:  # noqa: BLE001 - any failure: keep the repository whole
                    # Without an index's children, its kept children cannot be told from
                    # the rest: nothing of this repository is deleted in this run.
                    unreadable = f"index {digest} unreadable ({type(error).__name__}): repository skipped"
                    named = []
                children[digest] = named
                child_of.update(named)
        referrers: dict[str, list[str]] = {}
        for digest, manifest in manifests.items():
            if manifest["subject"] in manifests:
                referrers.setdefault(manifest["subject"], []).append(digest)
        followers = child_of | {d for d, m in manifests.items() if m["subject"] in manifests}
        images = sorted(
            (d for d in manifests if d not in followers and d in tags),
            key=lambda d: (-manifests[d]["pushed_ms"], d),
        )
        rank = {digest: position for position, digest in enumerate(images)}
        immutable = self._immutability.guard(repository)

        decisions: dict[str, Decision] = {}
        for digest, manifest in manifests.items():
            pushed_ms = manifest["pushed_ms"]
            own_tags = sorted(tags.get(digest, []))
            decision = Decision(digest, own_tags, pushed_ms, pulls.get(digest), False, [])
            decisions[digest] = decision
            keep, expire = self._judge(
                rules, manifest, own_tags, pulls.get(digest), rank.get(digest), as_of_ms
            )
            covering = next(
                ((tag, rule) for tag in own_tags if immutable is not None and (rule := immutable(tag))), None
            )
            if covering is not None:
                decision.reasons = [f"immutable: tag {covering[0]} (rule {covering[1].id})"]
            elif as_of_ms - pushed_ms < GRACE_SECONDS * 1000:
                grace = format_period(GRACE_SECONDS)
                decision.reasons = [f"pushed {_ago(as_of_ms, pushed_ms)}: within the {grace} grace"]
            elif keep:
                decision.reasons = keep
            elif expire:
                decision.delete, decision.reasons = True, expire
            else:
                decision.reasons = ["no rule touches it"]
        # Children of kept indexes, and referrers of kept subjects, are kept (and so on down).
        pending = [d for d, decision in decisions.items() if not decision.delete]
        while pending:
            parent = pending.pop()
            for follower, why in [(c, "child of kept index") for c in children.get(parent, [])] + [
                (r, "referrer of kept manifest") for r in referrers.get(parent, [])
            ]:
                decision = decisions[follower]
                if decision.delete:
                    decision.delete, decision.reasons = False, [f"{why} {parent}"]
                    pending.append(follower)

        if unreadable is not None:
            for decision in decisions.values():
                if decision.delete:
                    decision.delete, decision.reasons = False, [unreadable]

        # Indexes first, so that no kept-until-now index names a deleted child meanwhile.
        def order(decision: Decision) -> tuple:
            is_index = manifests[decision.digest]["media_type"] in media_types.INDEXES
            return (not is_index, -decision.pushed_ms, decision.digest)

        plan.decisions = sorted(decisions.values(), key=order)
        return plan

    @staticmethod
    def _judge(
        rules: Sequence[RetentionRule],
        manifest: dict[str, Any],
        tags: list[str],
        pulled_ms: int | None,
        rank: int | None,
        as_of_ms: int,
    ) -> tuple[list[str], list[str]]:
        """(why kept, why it would go), rule by rule (the module docstring's combination)."""
        keep: list[str] = []
        expire: list[str] = []
        age_ms = as_of_ms - manifest["pushed_ms"]
        for rule in rules:
            untagged = not tags
            if not rule.has_keep_conditions and not untagged:
                continue  # an untagged-only rule leaves tagged manifests alone
            kept, missed = [], []
            if rule.keep_last:
                if rank is not None and rank < rule.keep_last:
                    kept.append(f"among the newest {rule.keep_last} (#{rank + 1})")
                else:
                    missed.append(
                        f"not among the newest {rule.keep_last}"
                        + (
                            f" (#{rank + 1})"
                            if rank is not None
                            else " (untagged, a child or a referrer: not counted)"
                        )
                    )
            if rule.keep_pushed_within:
                window = format_period(rule.keep_pushed_within)
                if age_ms < rule.keep_pushed_within * 1000:
                    kept.append(f"pushed within {window}")
                else:
                    missed.append(f"not pushed within {window}")
            if rule.keep_pulled_within:
                window = format_period(rule.keep_pulled_within)
                if pulled_ms is not None and as_of_ms - pulled_ms < rule.keep_pulled_within * 1000:
                    kept.append(f"pulled within {window}")
                else:
                    missed.append(f"not pulled within {window}")
            if rule.keep_tags:
                matching = [t for t in tags if any(pattern_matches(p, t) for p in rule.keep_tags)]
                if matching:
                    kept.append(f"tag {matching[0]} matches {', '.join(rule.keep_tags)}")
                else:
                    missed.append(f"no tag matching {', '.join(rule.keep_tags)}")
            if rule.untagged_after and untagged:
                window = format_period(rule.untagged_after)
                if age_ms < rule.untagged_after * 1000:
                    kept.append(f"untagged for less than {window}")
                else:
                    missed.append(f"untagged for more than {window}")
            if kept:
                keep.append(f"{rule.id}: {'; '.join(kept)}")
            else:
                expire.append(f"{rule.id}: {'; '.join(missed)}")
        return keep, expire

    # --- runs -------------------------------------------------------------------------------

    def run(
        self,
        *,
        dry_run: bool = True,
        pattern: str | None = None,
        as_of_ms: int | None = None,
        remaining_seconds: Callable[[], float] | None = None,
        resume: bool = False,
    ) -> RetentionReport:
        """Evaluate (and unless ``dry_run``, apply) the rules, repository by repository, in
        catalog order; only repositories matching ``pattern`` when given. With
        ``remaining_seconds`` (the scheduled function), stop starting repositories when
        less than STOP_MARGIN_SECONDS is left; with ``resume``, start after the saved
        cursor and save it when stopping early (cleared once the catalog is done)."""
        if pattern is not None:
            try:
                validate_pattern(pattern)
            except InvalidName as error:
                raise InvalidRule(str(error)) from None
        as_of_ms = as_of_ms if as_of_ms is not None else int(self._clock() * 1000)
        report = RetentionReport(as_of_ms, dry_run)
        rules = self.list_rules()
        if not rules:
            return report
        after = self._store.get_cursor() if resume else None
        for repository in self._store.repositories(after):
            if remaining_seconds is not None and remaining_seconds() < STOP_MARGIN_SECONDS:
                report.complete = False
                if resume and not dry_run:
                    self._store.set_cursor(after)
                return report
            if (pattern is None or pattern_matches(pattern, repository)) and any(
                rule.covers(repository) for rule in rules
            ):
                plan = self.evaluate(repository, rules, as_of_ms)
                report.repositories.append(plan)
                if not dry_run:
                    self.apply(plan)
            after = repository
        if resume and not dry_run:
            self._store.set_cursor(None)
        return report

    def apply(self, plan: RepositoryPlan) -> None:
        """Delete what ``plan`` (an evaluation) marks, each delete conditional on no push
        since the evaluation; each decision gets its outcome. Stray pull records go too."""
        for decision in plan.deletions:
            try:
                self._manifests.delete(plan.repository, decision.digest, pushed_ms=decision.pushed_ms)
                decision.outcome = "deleted"
            except ManifestUnknown:
                decision.outcome = "skipped: pushed again (or deleted) since the evaluation"
            except RegistryError as error:  # DENIED: an immutability rule added meanwhile
                decision.outcome = f"skipped: {error.message}"
            except Exception as error:  # noqa: BLE001 - one failure does not stop the run
                decision.outcome = f"failed: {type(error).__name__}: {str(error)[:200]}"
        for digest in plan.stray_pull_records:
            try:
                self._pulls.forget_pull(plan.repository, digest)
            except Exception:  # noqa: BLE001 - strays are harmless; the next run tries again
                pass
