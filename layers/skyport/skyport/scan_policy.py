"""Scan policies (issue 14): refuse to serve an image whose vulnerability report has
findings at or above a severity, in the manner of Harbor's "prevent vulnerable images from
running" and zot's, per repository pattern, with an allow list of vulnerability ids.

A policy names the repositories it covers by a pattern, in the grants' grammar and with
the grants' matcher (``auth/policy.py``, as immutability rules do: a repository name, ``*``
matching any run of characters, ``/`` included: ``team-a/*``, ``*``); one policy per
pattern. Its ``severity`` is one of LOW, MEDIUM, HIGH, CRITICAL; its ``allow`` list holds
vulnerability ids (an OSV id or any alias: ``GHSA-...``, ``CVE-...``) that do not count.

What is refused, and how (the manifest route asks ``ScanPolicies.check`` after it found
the manifest, before it answers):

- a GET **and a HEAD** of an image manifest (by tag or digest) of a covered repository
  whose report (``ScanService.report``) has findings at or above the policy's severity,
  not counting allowed ids (``Report.at_or_above``; UNKNOWN severities count for no
  level): ``DENIED`` (403) with a detail naming the count, the threshold and the first
  ids. HEAD too: docker and containerd HEAD a tag to learn its digest, then GET it; a HEAD
  that says 200 for a manifest the GET refuses would send them into a pull that fails
  late, and would tell a scripted `crane digest`-style check the image is fine;
- with several policies covering a repository, every one is applied: the most
  protective wins (as with immutability rules, adding a policy never frees an image);
- an **index** (multi-platform) is served: it holds no software of its own, and each
  platform image the client then fetches is checked (docker pulls an index, then the
  platform's manifest by digest, which is refused). Checking every child on the index
  GET would cost one report lookup per platform on every pull;
- artifacts (the SBOMs and reports themselves, signatures, charts: any manifest with an
  artifactType other than an image config) are served: nothing to scan in them;
- an image **not scanned yet** (no report: the scan on push has not finished, or failed)
  is served, as ECR serves images whose scan is pending; a policy added with
  ``require_scan`` refuses it instead (DENIED, "not scanned yet"), for those who would
  rather a deployment wait a minute for the scan than run an unknown image;
- an image whose scan record names a report that is gone (a user with delete permission
  deleted the report referrer) is refused by every covering policy, ``require_scan`` or
  not (DENIED, "scan report deleted"): deleting its report must not turn a refused image
  into an unscanned, served one. ``skyport scan REF`` writes a new report.

Cost: no policy covering the repository, no call at all beyond the rule snapshot (read
at most every ``cache_seconds`` per process, skyport/rule_snapshot.py, as immutability
and cache rules are). Covered, the report of a digest is looked up once per
``cache_seconds`` per process (a bounded in-process map, :class:`ReportCache`): a pull
burst of one image costs one lookup, not one per GET. So a new scan's verdict, or a
policy change, reaches a warm instance within ``cache_seconds``
(SKYPORT_SCAN_POLICY_CACHE_SECONDS, 30 by default).

A failure to read a report (storage unavailable) is answered 503, never "serve anyway":
a policy fails closed.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .auth.policy import InvalidName, pattern_matches, validate_pattern
from .errors import Denied, RegistryError
from .media_types import DOCKER_CONFIG, IMAGE_MANIFESTS, OCI_CONFIG
from .rule_snapshot import RuleSnapshot
from .scanning.model import SEVERITIES, MissingReport, Report
from .storage.ports import ManifestRecord

DEFAULT_CACHE_SECONDS = 30
# Bounds that keep matching cheap on every pull, and the policy set one small Query.
MAX_POLICIES = 100
MAX_ALLOWED_IDS = 200
# Reports one process keeps (a report of a few hundred findings is some 100 KB in memory:
# 256 of them, 25 MB, is the worst case; most images have few findings).
MAX_CACHED_REPORTS = 256
# Ids named in a refusal's detail: enough to act on, the report has them all.
MAX_IDS_IN_DETAIL = 10
# Levels a policy may name: UNKNOWN counts for no level (scanning/model.py).
POLICY_SEVERITIES = SEVERITIES[1:]
# An OSV id or alias: GHSA-xxxx-xxxx-xxxx, CVE-2021-44228, DSA-5532-1, ALPINE-CVE-..., GO-2022-0001.
_VULNERABILITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class InvalidPolicy(ValueError):
    """A policy refused at add: a bad pattern, severity or id, too many, a duplicate."""


class PolicyNotFound(LookupError):
    pass


def validate_severity(severity: str) -> str:
    level = severity.upper() if isinstance(severity, str) and severity.isascii() else ""
    if level not in POLICY_SEVERITIES:
        raise InvalidPolicy(f"invalid severity {str(severity)[:20]!r}: one of {', '.join(POLICY_SEVERITIES)}")
    return level


def parse_allowed(values: Iterable[str]) -> tuple[str, ...]:
    """Allowed ids from ``--allow`` (repeatable, each comma-separated or spaced), validated,
    in order, without repeats."""
    chosen: list[str] = []
    for value in values:
        for identifier in value.replace(",", " ").split():
            if not _VULNERABILITY_ID.fullmatch(identifier):
                raise InvalidPolicy(
                    f"invalid vulnerability id {identifier[:70]!r}: an OSV id or alias "
                    "(CVE-2021-44228, GHSA-jfh8-c2jp-5v3q), ASCII letters, digits, '-', '.', ':', '_'"
                )
            if identifier not in chosen:
                chosen.append(identifier)
    if len(chosen) > MAX_ALLOWED_IDS:
        raise InvalidPolicy(f"at most {MAX_ALLOWED_IDS} allowed ids in one policy, not {len(chosen)}")
    return tuple(chosen)


def validate_repositories(pattern: str) -> str:
    try:
        return validate_pattern(pattern if isinstance(pattern, str) else "")
    except InvalidName as error:
        raise InvalidPolicy(str(error)) from None


def is_scanned_kind(record: ManifestRecord) -> bool:
    """Whether a scan reads this manifest: an image manifest of a container image (its
    artifactType, for an OCI manifest, is its config's type), not an index or an artifact."""
    return record.media_type in IMAGE_MANIFESTS and record.artifact_type in (None, OCI_CONFIG, DOCKER_CONFIG)


@dataclass(frozen=True, slots=True)
class ScanPolicy:
    repositories: str  # a repository pattern, the grants' grammar; one policy per pattern
    severity: str  # one of POLICY_SEVERITIES: findings at or above it are refused
    allow: tuple[str, ...] = ()  # vulnerability ids (or aliases) that do not count
    require_scan: bool = False  # an image with no report is refused too
    created_ms: int = 0

    def covers(self, repository: str) -> bool:
        return pattern_matches(self.repositories, repository)

    def fields(self) -> dict[str, Any]:
        return {
            "repositories": self.repositories,
            "severity": self.severity,
            "allow": list(self.allow),
            "require_scan": self.require_scan,
            "created_ms": self.created_ms,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ScanPolicy:
        return cls(
            repositories=fields["repositories"],
            severity=fields["severity"],
            allow=tuple(fields.get("allow") or ()),
            require_scan=bool(fields.get("require_scan")),
            created_ms=int(fields.get("created_ms") or 0),
        )

    def describe(self) -> str:
        allowed = f", allowing {', '.join(self.allow)}" if self.allow else ""
        unscanned = "; images not scanned yet are refused" if self.require_scan else ""
        threshold = f"with findings at or above {self.severity} are refused"
        return f"images of {self.repositories} {threshold}{allowed}{unscanned}"

    def summary(self) -> dict[str, Any]:
        """What a refusal's detail says of the policy."""
        return {
            "repositories": self.repositories,
            "severity": self.severity,
            "allow": list(self.allow),
            "requireScan": self.require_scan,
        }


class ScanPolicyStore(Protocol):
    """The table's side (storage/dynamodb/scan_policy.py); policies as plain fields."""

    def put_policy(self, fields: dict[str, Any], replace: bool) -> bool: ...  # False: condition
    def list_policies(self) -> list[dict[str, Any]]: ...
    def delete_policy(self, pattern: str) -> bool: ...  # False: no such policy


class ReportCache:
    """The report of (repository, digest), or None (not scanned), as looked up at most once
    per ``ttl_seconds`` per process; at most ``max_entries``, the least recently used
    dropped first. ``ttl_seconds`` 0: no cache, every check looks up."""

    def __init__(
        self,
        lookup: Callable[[str, str], Report | MissingReport | None],
        ttl_seconds: float,
        max_entries: int = MAX_CACHED_REPORTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, Report | MissingReport | None]] = (
            OrderedDict()
        )

    def get(self, repository: str, digest: str) -> Report | MissingReport | None:
        key, now = (repository, digest), self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self._ttl:
                self._entries.move_to_end(key)
                return entry[1]
        # Looked up outside the lock: two GETs of one new digest at once may both look it up
        # (once, per process, per TTL); a lock held across storage would serialize every pull.
        report = self._lookup(repository, digest)
        if self._ttl > 0:
            with self._lock:
                self._entries[key] = (now, report)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        return report

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


def denied_vulnerable(
    repository: str, digest: str, policy: ScanPolicy, findings: list, report: Report
) -> RegistryError:
    """DENIED (403): the image's report has ``findings`` at or above the policy's severity.
    The detail::

        {"reason": "vulnerable image", "repository": ..., "digest": ...,
         "findings": 3, "severity": "HIGH", "counts": {"HIGH": 2, "CRITICAL": 1},
         "ids": ["CVE-...", ...] (at most MAX_IDS_IN_DETAIL, most severe first),
         "scannedAt": ..., "policy": {"repositories", "severity", "allow", "requireScan"}}
    """
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    ordered = sorted(findings, key=lambda finding: -SEVERITIES.index(finding.severity))
    ids = list(dict.fromkeys(finding.id for finding in ordered))[:MAX_IDS_IN_DETAIL]
    detail = {
        "reason": "vulnerable image",
        "repository": repository,
        "digest": digest,
        "findings": len(findings),
        "severity": policy.severity,
        "counts": {level: counts[level] for level in reversed(SEVERITIES) if level in counts},
        "ids": ids,
        "scannedAt": report.scanned_at,
        "policy": policy.summary(),
    }
    noun = "finding" if len(findings) == 1 else "findings"
    message = (
        f"{repository}@{digest} has {len(findings)} vulnerability {noun} at or above {policy.severity} "
        f"(scan policy {policy.repositories}): {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}; "
        "`skyport vulns` lists them"
    )
    return Denied(detail, message=message)


def denied_report_missing(
    repository: str, digest: str, policy: ScanPolicy, missing: MissingReport
) -> RegistryError:
    detail = {
        "reason": "scan report deleted",
        "repository": repository,
        "digest": digest,
        "report": missing.report_digest,
        "policy": policy.summary(),
    }
    message = (
        f"{repository}@{digest} was scanned but its vulnerability report {missing.report_digest} is gone, "
        f"so scan policy {policy.repositories} cannot clear it: `skyport scan` writes a new report"
    )
    return Denied(detail, message=message)


def denied_unscanned(repository: str, digest: str, policy: ScanPolicy) -> RegistryError:
    detail = {
        "reason": "not scanned yet",
        "repository": repository,
        "digest": digest,
        "policy": policy.summary(),
    }
    message = (
        f"{repository}@{digest} has not been scanned yet and scan policy {policy.repositories} "
        "requires a scan: retry when the scan completes (`skyport scan` runs it now)"
    )
    return Denied(detail, message=message)


class ScanPolicies:
    """The policies: whether a manifest may be served (every manifest GET and HEAD of a
    covered repository, from a per-process snapshot and report cache), and their
    administration (the `skyport scan-policy` commands)."""

    def __init__(
        self,
        store: ScanPolicyStore,
        report_of: Callable[[str, str], Report | MissingReport | None],
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._snapshot: RuleSnapshot[ScanPolicy] = RuleSnapshot(self._load, cache_seconds, clock)
        self._reports = ReportCache(report_of, cache_seconds, clock=clock)

    # --- enforcement --------------------------------------------------------------------

    def policies(self) -> tuple[ScanPolicy, ...]:
        """Every policy, from the per-process snapshot (read at most every cache_seconds)."""
        return self._snapshot.get()

    def _load(self) -> tuple[ScanPolicy, ...]:
        return tuple(
            sorted(
                (ScanPolicy.from_fields(fields) for fields in self._store.list_policies()),
                key=lambda policy: (policy.created_ms, policy.repositories),
            )
        )

    def covering(self, repository: str) -> list[ScanPolicy]:
        return [policy for policy in self.policies() if policy.covers(repository)]

    def check(self, repository: str, record: ManifestRecord) -> None:
        """Raise DENIED if a policy refuses serving ``record`` of ``repository``; return if
        it may be served. No covering policy: no lookup at all."""
        covering = self.covering(repository)
        if not covering or not is_scanned_kind(record):
            return
        report = self._reports.get(repository, record.digest)
        if isinstance(report, MissingReport):
            raise denied_report_missing(repository, record.digest, covering[0], report)
        if report is None:
            strict = next((policy for policy in covering if policy.require_scan), None)
            if strict is not None:
                raise denied_unscanned(repository, record.digest, strict)
            return
        for policy in covering:
            findings = report.at_or_above(policy.severity, frozenset(policy.allow))
            if findings:
                raise denied_vulnerable(repository, record.digest, policy, findings, report)

    def forget(self) -> None:
        """Drop the caches: the next check reads the policies and reports again."""
        self._snapshot.forget()
        self._reports.forget()

    # --- administration -------------------------------------------------------------------

    def add(
        self,
        repositories: str,
        severity: str,
        allow: Iterable[str] = (),
        require_scan: bool = False,
        replace: bool = False,
    ) -> ScanPolicy:
        """A new policy for ``repositories`` (or, with ``replace``, a new version of the
        one there). Refused (InvalidPolicy) on a bad pattern, severity or id, when a policy
        of that pattern exists (without ``replace``) or none does (with it), or past
        MAX_POLICIES."""
        validate_repositories(repositories)
        policy = ScanPolicy(
            repositories=repositories,
            severity=validate_severity(severity),
            allow=parse_allowed(allow),
            require_scan=require_scan,
            created_ms=time.time_ns() // 1_000_000,
        )
        existing = self.list_policies()
        if not replace and len(existing) >= MAX_POLICIES:
            raise InvalidPolicy(f"at most {MAX_POLICIES} scan policies: remove one first")
        if not self._store.put_policy(policy.fields(), replace):
            if replace:
                raise PolicyNotFound(
                    f"no scan policy for {repositories} to replace (add it without --replace)"
                )
            raise InvalidPolicy(
                f"a scan policy for {repositories} exists (`skyport scan-policy list`): "
                "add --replace to change it"
            )
        self.forget()
        return policy

    def list_policies(self) -> list[ScanPolicy]:
        policies = [ScanPolicy.from_fields(fields) for fields in self._store.list_policies()]
        return sorted(policies, key=lambda policy: (policy.created_ms, policy.repositories))

    def remove(self, repositories: str) -> ScanPolicy:
        try:
            validate_repositories(repositories)
        except InvalidPolicy:
            raise PolicyNotFound(
                f"no scan policy for {str(repositories)[:70]!r} (`skyport scan-policy list` shows them)"
            ) from None
        policy = next((p for p in self.list_policies() if p.repositories == repositories), None)
        if policy is None or not self._store.delete_policy(repositories):
            raise PolicyNotFound(f"no scan policy for {repositories} (`skyport scan-policy list` shows them)")
        self.forget()
        return policy
