"""What the scans of an image found, for a person or a UI (issue 14, "Using it"): the
`skyport vulns|sbom` commands and the scan extension endpoint (routes/scanning.py) read
them here, from what the scan service stored (skyport/scanning/service.py: the scan
record, the report and the SBOM, both OCI referrers of the scanned manifest).

A reference (tag or digest) names an image or an index. An image is one platform; an
index is each of its platform images (attestations and artifacts left out, as the scan
service leaves them out), each with its own record, report and SBOM.

Errors, all the registry's (skyport/errors.py): a bad name NAME_INVALID, a bad digest
DIGEST_INVALID; a repository the catalog does not list NAME_UNKNOWN; a tag or digest it
does not hold MANIFEST_UNKNOWN; a manifest that is no container image (an artifact:
nothing to scan), or an image no scan has reached (no scan record for any of its
platforms), SCAN_UNKNOWN (404).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ManifestUnknown, NameUnknown, ScanUnknown
from .media_types import INDEXES
from .scanning.model import SEVERITIES, Report

NOT_SCANNED = "not-scanned"  # no scan record: the scan on push has not started (or is off)


class ScanReader(Protocol):
    """What this reads of skyport.scanning.service.ScanService."""

    def record(self, repository: str, digest: str) -> Any: ...  # ScanRecord | None
    def report(self, repository: str, digest: str) -> Report | None: ...
    def sbom(self, repository: str, digest: str) -> bytes | None: ...
    def platform_digests(self, repository: str, reference: str) -> list[str]: ...


@dataclass(frozen=True)
class PlatformScan:
    """The scan of one platform image."""

    digest: str
    platform: str  # "linux/amd64", "linux/arm/v7"; "" for an image not named by an index
    status: str  # complete, scanning, failed (the scan record's), or NOT_SCANNED
    scanned_at: str = ""
    counts: dict[str, int] | None = None
    sbom_digest: str | None = None
    report_digest: str | None = None
    report: Report | None = None
    error: str = ""

    def fields(self) -> dict[str, Any]:
        """The endpoint's JSON of one platform image."""
        counts = self.report.counts() if self.report is not None else (self.counts or {})
        fields: dict[str, Any] = {
            "digest": self.digest,
            "status": self.status,
            "scannedAt": self.scanned_at or None,
            "counts": {level: counts.get(level, 0) for level in SEVERITIES} if counts else None,
            "sbomDigest": self.sbom_digest,
            "reportDigest": self.report_digest,
            "report": self.report.to_dict() if self.report is not None else None,
        }
        if self.platform:
            fields["platform"] = self.platform
        if self.error:
            fields["error"] = self.error
        return fields


@dataclass(frozen=True)
class ScanView:
    """The scans of what a reference names: one PlatformScan for an image, one per
    platform image for an index."""

    repository: str
    digest: str  # the manifest the reference names
    media_type: str
    platforms: list[PlatformScan]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def fields(self) -> dict[str, Any]:
        """The endpoint's JSON: an image's fields at the top level; an index's platform
        images under ``manifests``."""
        head = {"repository": self.repository, "digest": self.digest, "mediaType": self.media_type}
        if self.is_index:
            return {**head, "manifests": [platform.fields() for platform in self.platforms]}
        return {**head, **self.platforms[0].fields()}


def _platform_names(body: bytes | None) -> dict[str, str]:
    """digest -> "os/architecture[/variant]" from an index's descriptors (validated JSON at
    push; a field of another type is left out, never trusted)."""
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return {}
    children = document.get("manifests") if isinstance(document, dict) else None
    names: dict[str, str] = {}
    for child in children if isinstance(children, list) else []:
        platform = child.get("platform") if isinstance(child, dict) else None
        if not isinstance(platform, dict) or not isinstance(child.get("digest"), str):
            continue
        parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
        if all(isinstance(part, str) for part in parts[:2]):
            names[child["digest"]] = "/".join(part for part in parts if isinstance(part, str) and part)
    return names


class ScanResults:
    def __init__(self, manifests: Any, scans: ScanReader, repository_exists: Callable[[str], bool]) -> None:
        self._manifests = manifests  # skyport.manifests.ManifestService
        self._scans = scans
        self._repository_exists = repository_exists

    def _resolve(self, repository: str, reference: str):
        """The manifest record and body the reference names (NAME_UNKNOWN when the
        repository itself is unknown: checked only after a miss)."""
        try:
            return self._manifests.fetch(repository, reference)
        except ManifestUnknown:
            if not self._repository_exists(repository):
                raise NameUnknown({"name": repository}) from None
            raise

    def view(self, repository: str, reference: str, *, require_scan: bool = True) -> ScanView:
        """The scans of the image or index ``reference`` names. SCAN_UNKNOWN when it is no
        container image, or (``require_scan``) when none of its platforms has a scan record."""
        record, body = self._resolve(repository, reference)
        digests = self._scans.platform_digests(repository, record.digest)
        if not digests:
            raise ScanUnknown(
                {"name": repository, "reference": reference, "digest": record.digest},
                message=f"{repository}@{record.digest} is not a container image (an artifact, or an "
                "index of none): nothing in it is scanned",
            )
        names = _platform_names(body) if record.media_type in INDEXES else {}
        platforms = [self._platform(repository, digest, names.get(digest, "")) for digest in digests]
        if require_scan and all(platform.status == NOT_SCANNED for platform in platforms):
            raise ScanUnknown(
                {"name": repository, "reference": reference, "digest": record.digest},
                message=f"{repository}@{record.digest} has not been scanned yet "
                "(the scan on push runs shortly after the push; `skyport scan` runs it now)",
            )
        return ScanView(repository, record.digest, record.media_type, platforms)

    def _platform(self, repository: str, digest: str, platform: str) -> PlatformScan:
        record = self._scans.record(repository, digest)
        if record is None:
            return PlatformScan(digest, platform, NOT_SCANNED)
        report = self._scans.report(repository, digest) if record.report_digest else None
        return PlatformScan(
            digest,
            platform,
            record.status,
            scanned_at=record.scanned_at,
            counts=dict(record.counts or {}),
            sbom_digest=record.sbom_digest,
            report_digest=record.report_digest,
            report=report,
            error=record.error,
        )

    def sbom(self, repository: str, reference: str, platform: str | None = None) -> tuple[str, bytes]:
        """(platform image digest, its CycloneDX JSON). An index needs ``platform``
        ("linux/amd64") unless it holds one platform image; SCAN_UNKNOWN when the image
        has no SBOM yet."""
        record, body = self._resolve(repository, reference)
        digests = self._scans.platform_digests(repository, record.digest)
        names = _platform_names(body) if record.media_type in INDEXES else {}
        if platform:
            chosen = [digest for digest in digests if names.get(digest) == platform]
        else:
            chosen = digests
        if len(chosen) != 1:
            listed = {digest: names.get(digest, "") for digest in digests}
            if not digests:
                why = "is not a container image: nothing in it is scanned"
            elif platform:
                why = f"has no platform {platform[:40]}: one of {', '.join(sorted(set(listed.values())))}"
            else:
                why = "is an index: name a platform (one of " + ", ".join(sorted(set(listed.values()))) + ")"
            raise ScanUnknown(
                {"name": repository, "reference": reference, "digest": record.digest, "platforms": listed},
                message=f"{repository}@{record.digest} {why}",
            )
        data = self._scans.sbom(repository, chosen[0])
        if data is None:
            raise ScanUnknown(
                {"name": repository, "reference": reference, "digest": chosen[0]},
                message=f"{repository}@{chosen[0]} has no SBOM yet: not scanned "
                "(the scan on push runs shortly after the push; `skyport scan` runs it now)",
            )
        return chosen[0], data
