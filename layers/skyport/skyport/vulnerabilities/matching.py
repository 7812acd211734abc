"""Installed packages against OSV records: which vulnerabilities affect an image.

Which OSV ecosystem a package belongs to comes from its purl type and, for OS packages,
the image's distro (``Inventory.distro``; the purl's ``distro`` qualifier when the
inventory has none):

========  =====================  ==========================================
purl      distro                 OSV ecosystem (the name compared)
========  =====================  ==========================================
deb       debian 12              ``Debian:12`` (the SOURCE package: the purl's
                                 ``upstream`` qualifier, else its name)
deb       ubuntu 22.04           ``Ubuntu:22.04:LTS`` and ``Ubuntu:22.04``
apk       alpine 3.19.x          ``Alpine:v3.19`` (the origin: ``upstream``)
pypi                             ``PyPI`` (PEP 503 name)
npm                              ``npm`` (``@scope/name``)
maven                            ``Maven`` (``group:artifact``)
golang                           ``Go`` (module path; ``stdlib`` for Go itself)
========  =====================  ==========================================

Versions are compared with univers, by the ecosystem's rules (OSV schema, "affected[].ranges":
``ECOSYSTEM`` ranges in the ecosystem's own order, ``SEMVER`` ranges in SemVer 2.0's, where
build metadata such as Go's ``+incompatible`` does not count). A range is evaluated as the
schema's pseudo-code does: events sorted by version, ``introduced`` opens, ``fixed`` closes
at the version, ``last_affected`` closes after it, and ``limit`` bounds the whole range.

Never a guess: an installed version, or a version a record names, that univers cannot read
gives no finding, and the report's ``skipped`` says which package and why. So does a package
whose ecosystem has no mirrored data (rpm, or a bucket the mirror has not filled yet): a
report never looks clean for want of data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..scanning.model import Distro, Finding, Inventory, Package, Report, Skipped, severity_rank
from .osv import Advisory, Affected, Range, Severity, normalise_name

if TYPE_CHECKING:
    from .database import OsvDatabase


class Uncomparable(ValueError):
    """A version univers cannot read in this ecosystem."""

    def __init__(self, version: str, kind: str) -> None:
        super().__init__(f"{version!r} is not a valid {kind} version")
        self.version = version
        self.kind = kind


# --- which ecosystem ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    ecosystems: tuple[str, ...]  # OSV ecosystems, most specific first
    name: str  # the name OSV records use, not yet normalised


def _purl(package: Package) -> Any | None:
    from packageurl import PackageURL

    try:
        return PackageURL.from_string(package.purl)
    except ValueError:
        return None


def _distro_from_qualifier(value: str) -> Distro | None:
    """purl ``distro`` qualifier ``debian-12`` / ``alpine-3.19.1`` / ``ubuntu-22.04``."""
    distro_id, dash, version = value.rpartition("-")
    return Distro(distro_id.lower(), version) if dash and distro_id and version else None


def _os_ecosystems(distro: Distro) -> tuple[str, ...] | None:
    version = distro.version_id
    if distro.id == "debian" and re.fullmatch(r"[0-9]+(\.[0-9]+)*", version):
        return (f"Debian:{version.split('.')[0]}",)
    if distro.id == "ubuntu" and re.fullmatch(r"[0-9]{2}\.[0-9]{2}", version):
        # OSV names LTS releases "Ubuntu:22.04:LTS" and the others "Ubuntu:23.10".
        return (f"Ubuntu:{version}:LTS", f"Ubuntu:{version}")
    if distro.id == "alpine" and re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)*(_.*)?", version):
        major, minor = version.split(".")[:2]
        return (f"Alpine:v{major}.{minor}",)
    return None


def target_of(package: Package, distro: Distro | None) -> Target | str:
    """The OSV ecosystems and name of a package, or why it has none (for ``skipped``)."""
    purl = _purl(package)
    if purl is None:
        return "not a package URL"
    qualifiers = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
    kind = purl.type
    if kind in ("deb", "apk"):
        distro = distro or _distro_from_qualifier(qualifiers.get("distro", ""))
        if distro is None:
            return f"{kind} packages of an unknown distro"
        ecosystems = _os_ecosystems(distro)
        expected_kind = {"debian": "deb", "ubuntu": "deb", "alpine": "apk"}.get(distro.id)
        if ecosystems is None or expected_kind != kind:
            return f"{kind} packages of {distro.id} {distro.version_id}".rstrip()
        # OSV's Debian, Ubuntu and Alpine records name source packages (origins).
        return Target(ecosystems, qualifiers.get("upstream") or purl.name)
    if kind == "pypi":
        return Target(("PyPI",), purl.name)
    if kind == "npm":
        return Target(("npm",), f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name)
    if kind == "maven":
        return (
            Target(("Maven",), f"{purl.namespace}:{purl.name}") if purl.namespace else "maven without a group"
        )
    if kind == "golang":
        return Target(("Go",), f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name)
    distro = distro or _distro_from_qualifier(qualifiers.get("distro", ""))
    if kind == "rpm" and distro is not None:
        return f"{kind} packages of {distro.id} {distro.version_id}".rstrip()
    return f"{kind} packages"


# --- comparing versions --------------------------------------------------------------


def _semver(version: str) -> str:
    # SemVer 2.0 section 10: build metadata is ignored in precedence; Go's "v" prefix.
    return version.removeprefix("v").split("+", 1)[0]


def version_parser(ecosystem: str, range_type: str) -> tuple[str, Callable[[str], Any]]:
    """(the kind's name, a function: version string -> comparable univers version)."""
    from univers import versions

    base = ecosystem.split(":", 1)[0]
    if range_type == "SEMVER" or base in ("npm", "Go"):
        kind, cls, prepare = "SemVer", versions.SemverVersion, _semver
    else:
        kind, cls = {
            "Debian": ("Debian", versions.DebianVersion),
            "Ubuntu": ("Debian", versions.DebianVersion),
            "Alpine": ("Alpine", versions.AlpineLinuxVersion),
            "PyPI": ("PEP 440", versions.PypiVersion),
            "Maven": ("Maven", versions.MavenVersion),
        }[base]
        prepare = str.strip

    def parse(version: str) -> Any:
        text = prepare(version)
        if not text:
            raise Uncomparable(version, kind)
        try:
            return cls(text)
        except Exception:  # univers raises InvalidVersion, and ValueError/TypeError on odd input
            raise Uncomparable(version, kind) from None

    return kind, parse


def _in_range(installed: Any, affected_range: Range, parse: Callable[[str], Any]) -> tuple[bool, str]:
    """(whether the range holds the installed version, the first fixed version above it as
    the record spells it, "" for none)."""
    # "introduced": "0" is the schema's "from the very first version": below anything.
    events = [
        (event, None if event.kind == "introduced" and event.version == "0" else parse(event.version))
        for event in affected_range.events
    ]
    ordered = [pair for pair in events if pair[1] is None] + sorted(
        (pair for pair in events if pair[1] is not None), key=lambda pair: pair[1]
    )
    affected = False
    for event, version in ordered:
        if event.kind == "introduced":
            if version is None or installed >= version:
                affected = True
        elif event.kind == "fixed":
            if installed >= version:
                affected = False
        elif event.kind == "last_affected":
            if installed > version:
                affected = False
    limits = [version for event, version in events if event.kind == "limit"]
    if limits and not any(installed < limit for limit in limits):
        affected = False
    fixed_above = [
        (version, event.version)
        for event, version in ordered
        if event.kind == "fixed" and version > installed
    ]
    return affected, (min(fixed_above, key=lambda pair: pair[0])[1] if fixed_above else "")


def _affects(
    affected: Affected, installed_text: str, installed: Any, parse: Callable, base: str
) -> str | None:
    """None when the entry does not hold the installed version, else its first fixed
    version above it ("" when none is known)."""
    fixed: list[tuple[Any, str]] = []
    hit = False
    for affected_range in affected.ranges:
        in_range, fixed_version = _in_range(installed, affected_range, parse)
        if in_range:
            hit = True
            if fixed_version:
                fixed.append((parse(fixed_version), fixed_version))
    if not hit:
        # The enumerated versions, as strings (OSV: "versions" lists exact versions); Go's
        # and npm's compared without a "v" or build metadata.
        def same(text: str) -> str:
            return _semver(text) if base in ("Go", "npm") else text

        hit = same(installed_text) in {same(version) for version in affected.versions}
    if not hit:
        return None
    return min(fixed, key=lambda pair: pair[0])[1] if fixed else ""


# --- matching ------------------------------------------------------------------------


@dataclass
class MatchResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then by id, then by package."""
    return sorted(findings, key=lambda f: (-severity_rank(f.severity), f.id, f.purl, f.package))


def match_inventory(inventory: Inventory, database: OsvDatabase) -> MatchResult:
    """Findings (one per vulnerability and package) and what could not be matched, and why."""
    result = MatchResult()
    unsupported: dict[str, int] = {}  # reason -> packages
    without_data: dict[str, int] = {}  # base ecosystem -> packages
    for package in inventory.packages:
        target = target_of(package, inventory.distro)
        if isinstance(target, str):
            unsupported[target] = unsupported.get(target, 0) + 1
            continue
        base = target.ecosystems[0].split(":", 1)[0]
        if not database.has(base):
            without_data[base] = without_data.get(base, 0) + 1
            continue
        candidates: list[tuple[str, Advisory]] = []
        seen: set[str] = set()
        for ecosystem in target.ecosystems:
            for advisory in database.advisories(ecosystem, normalise_name(ecosystem, target.name)):
                if advisory.id not in seen:
                    seen.add(advisory.id)
                    candidates.append((ecosystem, advisory))
        if candidates:
            _match_package(package, target, candidates, result)
    for reason, count in sorted(unsupported.items()):
        result.skipped.append(
            Skipped("", "", f"{count} {_plural(count)} ({reason}): no OSV ecosystem for them, not matched")
        )
    for base, count in sorted(without_data.items()):
        result.skipped.append(
            Skipped(
                "", "", f"{count} {base} {_plural(count)}: no OSV data for {base} mirrored yet, not matched"
            )
        )
    result.findings = sort_findings(_merge_aliases(result.findings))
    return result


def _plural(count: int, noun: str = "") -> str:
    """``_plural(2)`` -> "packages"; ``_plural(2, "record")`` -> "2 records"."""
    if noun:
        return f"{count} {noun}" + ("" if count == 1 else "s")
    return "package" if count == 1 else "packages"


def _match_package(
    package: Package, target: Target, candidates: list[tuple[str, Advisory]], result: MatchResult
) -> None:
    parsers: dict[tuple[str, str], Callable[[str], Any]] = {}
    # The installed version per (ecosystem, range type): a univers version, or the
    # Uncomparable it raised (asked once, whatever the number of records).
    installed: dict[tuple[str, str], Any] = {}
    not_compared: list[str] = []  # records left out for want of a readable installed version
    unreadable: Uncomparable | None = None
    for ecosystem, advisory in candidates:
        name = normalise_name(ecosystem, target.name)
        base = ecosystem.split(":", 1)[0]
        hit = False
        fixed = ""
        severity: Severity | None = None
        try:
            for affected in advisory.affected:
                if affected.ecosystem != ecosystem or normalise_name(ecosystem, affected.name) != name:
                    continue
                # Each range in its own type's order (an entry may hold ECOSYSTEM and SEMVER).
                for range_type in sorted({r.type for r in affected.ranges} or {"ECOSYSTEM"}):
                    key = (ecosystem, range_type)
                    if key not in installed:
                        parsers[key] = version_parser(ecosystem, range_type)[1]
                        try:
                            installed[key] = parsers[key](package.version)
                        except Uncomparable as error:
                            installed[key] = error
                    if isinstance(installed[key], Uncomparable):
                        unreadable = installed[key]
                        raise unreadable
                    only = replace(affected, ranges=tuple(r for r in affected.ranges if r.type == range_type))
                    found = _affects(only, package.version, installed[key], parsers[key], base)
                    if found is not None:
                        hit = True
                        fixed = fixed or found
                        severity = severity or affected.severity
        except Uncomparable as error:
            if error is unreadable:
                not_compared.append(advisory.id)
            else:
                result.skipped.append(
                    Skipped(
                        package.layer,
                        package.location,
                        f"{target.name} {package.version}: {advisory.id} names version {error.version!r},"
                        f" not a valid {error.kind} version, so it was not compared",
                    )
                )
            continue
        if not hit:
            continue
        severity = severity or advisory.severity
        result.findings.append(
            Finding(
                id=advisory.id,
                aliases=advisory.aliases,
                severity=severity.level,
                summary=advisory.summary,
                package=package.name,
                version=package.version,
                purl=package.purl,
                fixed_version=fixed,
                score=severity.score,
            )
        )
    if unreadable is not None:
        result.skipped.append(
            Skipped(
                package.layer,
                package.location,
                f"{target.name} {package.version}: not a valid {unreadable.kind} version, so"
                f" {_plural(len(not_compared), 'record')} ({', '.join(not_compared)}) not compared",
            )
        )


def _merge_aliases(findings: list[Finding]) -> list[Finding]:
    """One finding per vulnerability and package: records of one package that name each
    other as aliases (GHSA-x and PYSEC-y for one CVE) are one vulnerability. The most
    severe record stands for the group (then the smallest id); the others' ids become
    its aliases."""
    by_package: dict[str, list[Finding]] = {}
    for finding in findings:
        by_package.setdefault(finding.purl, []).append(finding)
    merged: list[Finding] = []
    for group in by_package.values():
        clusters: list[list[Finding]] = []
        for finding in group:
            names = {finding.id, *finding.aliases}
            joined = [c for c in clusters if any(names & {f.id, *f.aliases} for f in c)]
            for cluster in joined:
                clusters.remove(cluster)
            clusters.append([finding, *(f for cluster in joined for f in cluster)])
        for cluster in clusters:
            lead = min(cluster, key=lambda f: (-severity_rank(f.severity), f.id))
            aliases = sorted({name for f in cluster for name in (f.id, *f.aliases)} - {lead.id})
            fixed = lead.fixed_version or next((f.fixed_version for f in cluster if f.fixed_version), "")
            merged.append(
                Finding(
                    lead.id,
                    tuple(aliases),
                    lead.severity,
                    lead.summary,
                    lead.package,
                    lead.version,
                    lead.purl,
                    fixed,
                    lead.score,
                )
            )
    return merged


def match(inventory: Inventory, database: OsvDatabase) -> list[Finding]:
    """The findings for an inventory, most severe first (see match_inventory for the gaps)."""
    return match_inventory(inventory, database).findings


def build_report(
    repository: str, digest: str, inventory: Inventory, database: OsvDatabase, now: datetime | float
) -> Report:
    """The report of one platform image: its findings, and every gap (the scanner's and the
    matcher's) in ``skipped``. ``now``: a datetime or a Unix time, stored as RFC 3339 UTC."""
    result = match_inventory(inventory, database)
    moment = datetime.fromtimestamp(now, UTC) if isinstance(now, int | float) else now.astimezone(UTC)
    return Report(
        repository=repository,
        digest=digest,
        scanned_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        database=database.version,
        findings=result.findings,
        skipped=[*inventory.skipped, *result.skipped],
        packages=len(inventory.packages),
    )
