"""OSV records (OSV schema 1.x, https://ossf.github.io/osv-schema/) read as untrusted input.

A record comes from a zip we downloaded or a directory someone wrote: every field is
checked for its type, and a record that is not what the schema says raises
:class:`MalformedRecord` (a ValueError) from :func:`parse_record`; :func:`read_records`
skips and counts those, so one bad record never hides the others nor stops a load.

What is kept of a record is what matching and the report need: id, aliases, modified,
a one-line summary, the severity, and per affected package its ecosystem, name, the
``ECOSYSTEM`` / ``SEMVER`` ranges (``GIT`` ranges name commits, which an image does not
carry: ignored) and the enumerated ``versions``.

Severity (schema "severity" and "database_specific"): a CVSS vector is scored with the
``cvss`` library, newest CVSS version first (v4, then v3, then v2), and the base score put
in the CVSS v3/v4 qualitative bands (CVSS v3.1 specification, section 5; v4.0 the same
bands): 0.1-3.9 LOW, 4.0-6.9 MEDIUM, 7.0-8.9 HIGH, 9.0-10.0 CRITICAL. A score of 0.0
("None" in the spec) is reported as LOW, not UNKNOWN: UNKNOWN means that no score is known,
which would be untrue, and a policy never counts UNKNOWN, which would hide the record
altogether. CVSS v2 has no CRITICAL band (NVD: 0-3.9 LOW, 4-6.9 MEDIUM, 7-10 HIGH). With no
vector, a label the database gives is read (GHSA's ``database_specific.severity``:
LOW/MODERATE/HIGH/CRITICAL; Ubuntu's priorities, as a ``severity`` of type ``Ubuntu`` or in
``ecosystem_specific``/``database_specific``: negligible/low/medium/high/critical; Debian's
urgency); anything else is UNKNOWN. A severity given inside an ``affected`` entry (schema
1.4+) wins over the record's for that package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# The largest record we read: real ones are a few KiB, the biggest (kernel advisories)
# a few hundred; anything larger is refused rather than parsed (a zip bomb's member).
MAX_RECORD_BYTES = 4 * 1024 * 1024
SUMMARY_CHARACTERS = 300

# OSV ecosystem names: letters, digits, space, ".", ":", "_", "-"; never a slash (they
# become a URL path segment and an S3 key segment: mirror.py, storage/keys.py).
ECOSYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .:_-]{0,63}")

# OSV ids and aliases: "<DB>-<entry>" such as GHSA-xxxx-xxxx-xxxx, CVE-2024-1234,
# ALPINE-CVE-2023-1, DEBIAN-DLA-3000-1, BIT-x; they reach reports, events and terminals.
RECORD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
# Control characters (terminal escapes among them) are replaced in what a record says.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

RANGE_TYPES = ("ECOSYSTEM", "SEMVER")  # GIT ranges are skipped: commits, not versions
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")

# Labels databases give instead of a vector, lower-cased -> our severity.
_LABELS = {
    # GitHub advisories (database_specific.severity)
    "low": "LOW",
    "moderate": "MEDIUM",
    "medium": "MEDIUM",
    "high": "HIGH",
    "critical": "CRITICAL",
    # Ubuntu priorities (ubuntu-cve-tracker): negligible is below low
    "negligible": "LOW",
    "untriaged": "UNKNOWN",
    # Debian security tracker urgencies
    "unimportant": "LOW",
    "not yet assigned": "UNKNOWN",
    "end-of-life": "UNKNOWN",
    # Red Hat / SUSE style words some records carry
    "important": "HIGH",
}


class MalformedRecord(ValueError):
    """The record is not OSV schema 1.x as far as matching needs it."""


@dataclass(frozen=True)
class Severity:
    level: str  # one of model.SEVERITIES
    score: str = ""  # the vector, or "<source>: <label>" it came from; "" for UNKNOWN


UNKNOWN = Severity("UNKNOWN")


@dataclass(frozen=True)
class Event:
    kind: str  # introduced, fixed, last_affected, limit
    version: str


@dataclass(frozen=True)
class Range:
    type: str  # ECOSYSTEM or SEMVER
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Affected:
    ecosystem: str  # as the record writes it: "Debian:12", "PyPI", "Alpine:v3.19"
    name: str  # as the record writes it; matching normalises both sides
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: Severity | None  # the entry's own, if any


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    modified: str
    summary: str
    severity: Severity
    affected: tuple[Affected, ...]
    withdrawn: bool = False


def _text(data: dict, name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedRecord(f"{name}: expected a string")
    return value


def _list(data: dict, name: str) -> list:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRecord(f"{name}: expected a list")
    return value


def _object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRecord(f"{name}: expected an object")
    return value


def band(score: float) -> str:
    """CVSS v3.1 / v4.0 qualitative rating of a base score; 0.0 ("None") -> LOW (see above)."""
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    return "LOW"


def _cvss_severity(kind: str, vector: str) -> Severity | None:
    """The severity of one CVSS vector; None when the cvss library cannot read it."""
    import cvss  # deferred: only a load of records needs it
    from cvss.exceptions import CVSSError

    try:
        if kind == "CVSS_V4":
            return Severity(band(float(cvss.CVSS4(vector).base_score)), vector)
        if kind == "CVSS_V3":
            return Severity(band(float(cvss.CVSS3(vector).base_score)), vector)
        if kind == "CVSS_V2":
            score = float(cvss.CVSS2(vector).base_score)
            # NVD's CVSS v2 bands: no CRITICAL.
            return Severity("HIGH" if score >= 7.0 else "MEDIUM" if score >= 4.0 else "LOW", vector)
    except (CVSSError, ValueError, KeyError, TypeError, ArithmeticError):
        return None
    return None


def _label_severity(source: str, label: Any) -> Severity | None:
    if not isinstance(label, str):
        return None
    level = _LABELS.get(label.strip().lower())
    if level is None or level == "UNKNOWN":
        return None
    return Severity(level, f"{source}: {label.strip()}")


_CVSS_PREFERENCE = ("CVSS_V4", "CVSS_V3", "CVSS_V2")


def severity_of(severities: list, *specific: tuple[str, dict]) -> Severity | None:
    """From a schema ``severity`` list (vectors first, newest CVSS version first, then a
    label such as Ubuntu's), else from the database/ecosystem-specific objects' labels."""
    entries = []
    for entry in severities:
        entry = _object(entry, "severity[]")
        entries.append((_text(entry, "type"), _text(entry, "score")))
    for kind in _CVSS_PREFERENCE:
        for entry_kind, score in entries:
            if entry_kind == kind and score:
                found = _cvss_severity(kind, score)
                if found is not None:
                    return found
    for entry_kind, score in entries:
        found = _label_severity(entry_kind, score) if entry_kind not in _CVSS_PREFERENCE else None
        if found is not None:
            return found
    for source, data in specific:
        for key in ("severity", "priority", "urgency", "ubuntu_priority"):
            found = _label_severity(f"{source}.{key}", data.get(key))
            if found is not None:
                return found
    return None


def _events(data: list) -> tuple[Event, ...]:
    events = []
    for item in data:
        item = _object(item, "events[]")
        kinds = [kind for kind in EVENT_KINDS if kind in item]
        if len(kinds) != 1:
            raise MalformedRecord("an event holds exactly one of introduced, fixed, last_affected, limit")
        version = item[kinds[0]]
        if not isinstance(version, str) or not version:
            raise MalformedRecord(f"{kinds[0]}: expected a version string")
        events.append(Event(kinds[0], version))
    if not any(event.kind == "introduced" for event in events):
        raise MalformedRecord("a range without an introduced event")
    return tuple(events)


def _affected(data: Any) -> Affected:
    data = _object(data, "affected[]")
    package = _object(data.get("package"), "package")
    ecosystem = _text(package, "ecosystem", required=True)
    name = _text(package, "name", required=True)
    ranges = []
    for item in _list(data, "ranges"):
        item = _object(item, "ranges[]")
        kind = _text(item, "type", required=True)
        events = _events(_list(item, "events"))
        if kind in RANGE_TYPES:
            ranges.append(Range(kind, events))
    versions = _list(data, "versions")
    if not all(isinstance(version, str) for version in versions):
        raise MalformedRecord("versions: expected strings")
    severity = severity_of(
        _list(data, "severity"),
        ("ecosystem_specific", _object(data.get("ecosystem_specific"), "ecosystem_specific")),
        ("database_specific", _object(data.get("database_specific"), "database_specific")),
    )
    return Affected(ecosystem, name, tuple(ranges), tuple(versions), severity)


def parse_record(data: Any) -> Advisory:
    """One OSV record (a parsed JSON object); MalformedRecord when it is not one."""
    if not isinstance(data, dict):
        raise MalformedRecord("a record is a JSON object")
    record_id = _text(data, "id", required=True)
    if not RECORD_ID.fullmatch(record_id):
        raise MalformedRecord("id: not an OSV id")
    aliases = _list(data, "aliases")
    if not all(isinstance(alias, str) for alias in aliases):
        raise MalformedRecord("aliases: expected strings")
    # An alias we would not print is left out, not the record with it.
    aliases = [alias for alias in aliases if RECORD_ID.fullmatch(alias)]
    summary = _text(data, "summary") or _text(data, "details").strip().split("\n", 1)[0]
    summary = _CONTROL.sub(" ", summary).strip()
    if len(summary) > SUMMARY_CHARACTERS:
        summary = summary[: SUMMARY_CHARACTERS - 1] + "…"
    severity = (
        severity_of(
            _list(data, "severity"),
            ("database_specific", _object(data.get("database_specific"), "database_specific")),
        )
        or UNKNOWN
    )
    affected = tuple(_affected(item) for item in _list(data, "affected"))
    withdrawn = data.get("withdrawn")
    if withdrawn is not None and not isinstance(withdrawn, str):
        raise MalformedRecord("withdrawn: expected a timestamp")
    return Advisory(
        id=record_id,
        aliases=tuple(alias for alias in aliases if alias != record_id),
        modified=_text(data, "modified", required=True),  # required by the schema
        summary=summary,
        severity=severity,
        affected=affected,
        withdrawn=bool(withdrawn),
    )


def parse_json(raw: bytes) -> Advisory:
    """A record's bytes (UTF-8 JSON) -> Advisory; MalformedRecord for anything else."""
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecord(f"record larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise MalformedRecord(f"not JSON: {error}") from None
    try:
        return parse_record(data)
    except RecursionError:
        raise MalformedRecord("nested too deep") from None


@dataclass
class ReadResult:
    advisories: list[Advisory]
    malformed: int = 0
    withdrawn: int = 0


def read_records(raws: Iterable[bytes]) -> ReadResult:
    """Parse every record; malformed ones are counted and skipped, withdrawn ones counted
    and left out (OSV: a withdrawn record no longer applies)."""
    result = ReadResult([])
    for advisory in _parsed(raws, result):
        result.advisories.append(advisory)
    return result


def _parsed(raws: Iterable[bytes], result: ReadResult) -> Iterator[Advisory]:
    for raw in raws:
        try:
            advisory = parse_json(raw)
        except MalformedRecord:
            result.malformed += 1
            continue
        if advisory.withdrawn:
            result.withdrawn += 1
            continue
        yield advisory


# --- names --------------------------------------------------------------------------


def base_ecosystem(ecosystem: str) -> str:
    """ "Debian:12" -> "Debian", "Ubuntu:22.04:LTS" -> "Ubuntu", "PyPI" -> "PyPI": the name
    OSV's per-ecosystem exports are published under."""
    return ecosystem.split(":", 1)[0]


def normalise_name(ecosystem: str, name: str) -> str:
    """The form both a record's and an installed package's names are compared in:
    PyPI per PEP 503 (runs of ``-_.`` are one ``-``, case-insensitive); Maven
    ``group:artifact`` and the distros' package names case-insensitively; npm and Go as
    written (npm names and Go module paths are case-sensitive)."""
    base = base_ecosystem(ecosystem)
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    if base in ("npm", "Go"):
        return name
    return name.lower()


def is_url_source(source: str) -> bool:
    """Whether a mirror source (SKYPORT_OSV_SOURCE) is an http(s) URL, not a directory."""
    from urllib.parse import urlsplit

    return urlsplit(source).scheme in ("http", "https")
