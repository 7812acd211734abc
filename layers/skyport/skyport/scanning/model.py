"""What a scan finds and reports (issue 14): the records every part of scanning shares.

The scanner (``scanning/image.py``) reads an image's layers into an :class:`Inventory`;
the matcher (``skyport/vulnerabilities/``) turns an inventory and the OSV data into
:class:`Finding` s; the scan service stores a :class:`Report` as an OCI artifact whose
``subject`` is the scanned manifest, next to the SBOM (CycloneDX JSON) built from the
same inventory.

Every record goes to JSON and back (``to_dict`` / ``from_dict``), because reports are
stored, fetched and read again by the CLI and the policy check. ``from_dict`` reads a
stored report as untrusted input: a field of the wrong type raises ``ValueError``.

A package is named by its purl (package-url spec): its type says the ecosystem
(``deb``, ``apk``, ``rpm``, ``pypi``, ``npm``, ``maven``, ``golang``), and OS packages
carry the distro as the ``distro`` qualifier (``pkg:deb/debian/openssl@3.0.11-1?distro=
debian-12``), so the matcher needs nothing but the purl and the inventory's distro.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Severity levels, lowest first; a finding without a score is UNKNOWN, which policies
# never count as "at or above" a named level.
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")

# Media types of what a scan stores as referrers of the scanned manifest. The SBOM's is
# CycloneDX's registered one; the report is ours.
SBOM_ARTIFACT_TYPE = "application/vnd.cyclonedx+json"
REPORT_ARTIFACT_TYPE = "application/vnd.skyport.vulnerability-report.v1+json"


def severity_rank(severity: str) -> int:
    """0 for UNKNOWN up to 4 for CRITICAL; ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; one of {', '.join(SEVERITIES)}") from None


def _text(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    return value


def _texts(data: dict[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name}: expected a list of strings")
    return tuple(value)


def _records(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{name}: expected a list of objects")
    return value


@dataclass(frozen=True)
class Distro:
    """The image's OS, from ``/etc/os-release`` (or ``/usr/lib/os-release``)."""

    id: str  # ID=: debian, ubuntu, alpine, rhel, ...
    version_id: str  # VERSION_ID=: "12", "22.04", "3.19.1"
    pretty_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "versionId": self.version_id, "prettyName": self.pretty_name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distro:
        return cls(_text(data, "id"), _text(data, "versionId"), _text(data, "prettyName", ""))


@dataclass(frozen=True)
class Package:
    """One installed package, and where the scanner saw it."""

    name: str
    version: str
    purl: str
    location: str  # the path in the image that declared it (a dpkg status, a dist-info)
    layer: str  # digest of the layer that holds that path in the final image
    licenses: tuple[str, ...] = ()

    @property
    def ecosystem(self) -> str:
        """The purl's type: deb, apk, rpm, pypi, npm, maven, golang."""
        return self.purl[4:].split("/", 1)[0] if self.purl.startswith("pkg:") else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "purl": self.purl,
            "location": self.location,
            "layer": self.layer,
            "licenses": list(self.licenses),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Package:
        return cls(
            _text(data, "name"),
            _text(data, "version"),
            _text(data, "purl"),
            _text(data, "location", ""),
            _text(data, "layer", ""),
            _texts(data, "licenses"),
        )


@dataclass(frozen=True)
class Skipped:
    """Something the scan did not read, and why: a report never hides a gap."""

    layer: str  # layer digest; "" for the image as a whole
    path: str  # the path in the layer; "" for the whole layer
    reason: str  # for a person: "layer larger than 2 GiB, the most one scan reads", ...

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "path": self.path, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skipped:
        return cls(_text(data, "layer", ""), _text(data, "path", ""), _text(data, "reason"))


@dataclass
class Inventory:
    """What software an image holds: the scanner's output, the SBOM's and matcher's input."""

    distro: Distro | None = None
    packages: list[Package] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # How many tar entries the scanner met in all the layers (files, directories, links,
    # whiteouts): 0 for an image whose layers hold nothing at all. Not serialised (an
    # inventory read back from an SBOM says 0): it only decides whether a first scan has
    # anything to report (scanning/service.py).
    entries: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distro": self.distro.to_dict() if self.distro else None,
            "packages": [package.to_dict() for package in self.packages],
            "skipped": [gap.to_dict() for gap in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        distro = data.get("distro")
        if distro is not None and not isinstance(distro, dict):
            raise ValueError("distro: expected an object")
        return cls(
            Distro.from_dict(distro) if distro else None,
            [Package.from_dict(item) for item in _records(data, "packages")],
            [Skipped.from_dict(item) for item in _records(data, "skipped")],
        )


@dataclass(frozen=True)
class Finding:
    """One vulnerability (an OSV record) affecting one installed package."""

    id: str  # the OSV id: GHSA-..., DSA-..., CVE-..., ALPINE-CVE-...
    aliases: tuple[str, ...]
    severity: str  # one of SEVERITIES
    summary: str
    package: str  # the package's name
    version: str  # the installed version
    purl: str
    fixed_version: str = ""  # the first fixed version, "" when there is none yet
    score: str = ""  # the CVSS vector or score the severity came from, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "severity": self.severity,
            "summary": self.summary,
            "package": self.package,
            "version": self.version,
            "purl": self.purl,
            "fixedVersion": self.fixed_version,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        severity = _text(data, "severity")
        severity_rank(severity)
        return cls(
            _text(data, "id"),
            _texts(data, "aliases"),
            severity,
            _text(data, "summary", ""),
            _text(data, "package"),
            _text(data, "version"),
            _text(data, "purl"),
            _text(data, "fixedVersion", ""),
            _text(data, "score", ""),
        )


@dataclass(frozen=True)
class MissingReport:
    """An image's scan record names a report that is no longer there (deleted through the
    API, or unreadable): what a scan policy sees instead of a Report, so that deleting a
    report never turns a refused image into an unscanned one (scan_policy.py)."""

    report_digest: str


@dataclass
class Report:
    """The vulnerability report of one platform image, stored as a referrer of it."""

    repository: str
    digest: str  # the scanned (platform) manifest
    scanned_at: str  # RFC 3339, UTC
    database: str  # which OSV data: "osv <newest record's modified time>", for a person
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    packages: int = 0  # how many packages were matched

    def counts(self) -> dict[str, int]:
        """Findings by severity, every level present (0 where none)."""
        tally = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            tally[finding.severity] += 1
        return tally

    def at_or_above(self, severity: str, allowed: frozenset[str] = frozenset()) -> list[Finding]:
        """The findings a policy of ``severity`` counts, leaving out allowed ids (an id or any
        of its aliases). UNKNOWN counts for no level."""
        floor = severity_rank(severity)
        return [
            finding
            for finding in self.findings
            if finding.severity != "UNKNOWN"
            and severity_rank(finding.severity) >= floor
            and finding.id not in allowed
            and not allowed.intersection(finding.aliases)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "scannedAt": self.scanned_at,
            "database": self.database,
            "packages": self.packages,
            "counts": self.counts(),
            "findings": [finding.to_dict() for finding in self.findings],
            "skipped": [gap.to_dict() for gap in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        if not isinstance(data, dict):
            raise ValueError("a report is a JSON object")
        packages = data.get("packages", 0)
        if not isinstance(packages, int) or isinstance(packages, bool) or packages < 0:
            raise ValueError("packages: expected a count")
        return cls(
            _text(data, "repository"),
            _text(data, "digest"),
            _text(data, "scannedAt"),
            _text(data, "database", ""),
            [Finding.from_dict(item) for item in _records(data, "findings")],
            [Skipped.from_dict(item) for item in _records(data, "skipped")],
            packages,
        )
