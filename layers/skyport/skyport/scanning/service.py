"""The scan on push (issue 14): every pushed platform image gets an SBOM and a
vulnerability report, stored as OCI referrers of it.

The scan function (functions/scan: ``scan_on_push``) hands each manifest.pushed event to
:meth:`ScanService.on_event`; `skyport scan` and the extension endpoint call
:meth:`ScanService.scan`; the daily ``rescan`` function calls :meth:`rescan_recent`.

What is scanned: each platform image. An index is expanded to its platform manifests
(two levels at most); attestation manifests (``vnd.docker.reference.type:
attestation-manifest``), artifacts (an ``artifactType``, a ``subject``, a config that is
not an image config, layers that are not tar layers) and image manifests without layers
are never scanned; an image whose layers hold no entry at all is read and left without
SBOM or report (NOTHING_TO_SCAN). So our own SBOM and report artifacts, whose manifest.pushed events come
back to the scan queue, are not either. A scan that can read none of an image's layers
fails (scan.failed) and pushes nothing (``_require_something_read``).
Repositories under a pull-through cache prefix are read-only to clients and to the
scanner alike (skyport/pull_through): they are not scanned.

How: the layers are read from S3 as streams (``LayerSource.open`` gives a fresh
GetObject body each time, never a whole layer), in manifest order, by the scanner
(``scanning/image.py``); the inventory becomes a CycloneDX SBOM (``scanning/sbom.py``) and,
matched against the OSV data (``skyport/vulnerabilities``), a :class:`Report`. Both are
pushed as OCI 1.1 artifacts (image manifest with ``artifactType``, the empty config, one
layer holding the JSON, ``subject`` the scanned manifest) through the registry's own blob
and manifest services, so they are referrers (``GET /v2/<name>/referrers/<digest>`` lists
them with their artifactTypes and annotations), events, usage and lifecycle like any push.
The report's annotations carry the counts (``io.skyport.scan.critical`` ...), so a
referrers listing shows them without fetching the report.

The scan record, ``REPO#<name> / SCAN#<digest>`` (storage/dynamodb/scans.py): a scan
takes its lease with a conditional write first (of a hundred deliveries of one event, one
scans; an image already scanned is not scanned again unless forced), and only the lease's
holder writes the outcome. Its terminal writes are the events scan.completed and
scan.failed (skyport/events.py). The record goes with its manifest: the manifest delete's
transaction removes it (storage/dynamodb/manifests.py), as it removes the PULL# record.

A re-scan (forced, or the daily one for images pulled within SKYPORT_RESCAN_PULLED_DAYS)
reads the stored SBOM back (``inventory_from_sbom``) instead of the layers, matches it
against the current data, pushes a new report, then deletes the previous report manifest;
the SBOM is never touched. The ids the new report has and the previous one had not are
the record's ``new_findings``, and so scan.completed's ``newFindings``.

What the report and SBOM readers trust: :meth:`report` and :meth:`sbom` read the digests
the scan record names, never "the newest referrer of that artifactType": anyone who may
push to a repository may push a referrer with our artifactType, and a forged clean report
must not pass a policy (skyport/scan_policy.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from .. import media_types
from ..errors import ManifestUnknown
from ..storage import keys
from ..storage.ports import BlobRecord, ManifestRecord, ObjectStore, StorageUnavailable
from .model import REPORT_ARTIFACT_TYPE, SBOM_ARTIFACT_TYPE, SEVERITIES, MissingReport, Report, Skipped

if TYPE_CHECKING:
    from ..blobs import BlobService
    from ..config import Settings
    from ..events import RegistryEvent
    from ..manifests import ManifestService
    from ..pulls import PullStore
    from ..storage.ports import ManifestIndex
    from .model import Inventory

log = logging.getLogger(__name__)

SCANNING, COMPLETE, FAILED = "scanning", "complete", "failed"

# What a call to scan() did for one platform image (ScanResult.status).
SCANNED = "scanned"  # scanned now: SBOM and report pushed
ALREADY_SCANNED = "already-scanned"  # a scan ran to its end before; nothing done
RUNNING = "running"  # another scan holds the record's lease; nothing done
SCAN_FAILED = "failed"  # the scan failed: the record says why (scan.failed)
# The manifest was deleted (its record with it), or another scan took the lease over, while
# this one ran: it recorded nothing and deleted what it had pushed.
SUPERSEDED = "superseded"
# The image's layers hold no entry at all (empty tars): no software, nothing to report; no
# SBOM or report is pushed and no record kept (_holds_nothing).
NOTHING_TO_SCAN = "nothing-to-scan"

# Layer media types the scanner reads (image-spec "Image Layer Filesystem Changeset";
# Docker image manifest v2.2). A manifest with any other layer is an artifact.
TAR_LAYERS = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
IMAGE_CONFIGS = frozenset({media_types.OCI_CONFIG, media_types.DOCKER_CONFIG})
# buildkit's attestation manifests in an index (docker buildx: "Attestation storage").
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_TYPE = "attestation-manifest"
# An index inside an index is allowed by image-spec; deeper nesting is not followed.
MAX_INDEX_DEPTH = 2
# image-spec "Empty Descriptor": the config of an artifact that needs none.
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = {
    "mediaType": media_types.OCI_EMPTY,
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
    "data": "e30=",
}
# Annotation keys (image-spec "Pre-Defined Annotation Keys", and ours).
CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
COUNT_ANNOTATION = "io.skyport.scan.{severity}"  # one per severity, lower case
DATABASE_ANNOTATION = "io.skyport.scan.database"
# The most bytes read back from an SBOM or report artifact: far above a real one, and it
# bounds what a forged artifact could make a reader load.
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
# A scan on push stops reading layers this long before the function's deadline, to leave
# time for matching, the two pushes and the record.
DEADLINE_MARGIN_SECONDS = 60
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ScanRecord:
    """The scan record of one platform manifest (storage/dynamodb/scans.py)."""

    status: str  # scanning, complete, failed
    lease_owner: str | None = None
    lease_until_ms: int = 0
    sbom_digest: str | None = None
    report_digest: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    scanned_at: str = ""
    database: str = ""
    new_findings: tuple[str, ...] = ()
    error: str = ""


class ScanStore(Protocol):
    """The table's side (storage/dynamodb/scans.py); records as its field dicts."""

    def get(self, repository: str, digest: str) -> dict[str, Any] | None: ...

    def begin(
        self, repository: str, digest: str, owner: str, now_ms: int, lease_ms: int, force: bool
    ) -> tuple[bool, dict[str, Any] | None]: ...

    def complete(
        self,
        repository: str,
        digest: str,
        owner: str,
        *,
        sbom_digest: str,
        report_digest: str,
        counts: dict[str, int],
        scanned_at: str,
        database: str,
        new_findings: tuple[str, ...] | None,
    ) -> bool: ...

    def fail(self, repository: str, digest: str, owner: str, error: str) -> bool: ...

    def forget(self, repository: str, digest: str) -> None: ...


@dataclass(frozen=True)
class ScanResult:
    """What scan() did for one platform image."""

    repository: str
    digest: str  # the platform manifest
    status: str  # SCANNED, ALREADY_SCANNED, RUNNING, SCAN_FAILED, SUPERSEDED, NOTHING_TO_SCAN
    sbom_digest: str | None = None
    report_digest: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    new_findings: tuple[str, ...] | None = None  # a re-scan's newly found ids
    error: str = ""


@dataclass
class RescanSummary:
    """What one daily re-scan run did."""

    rescanned: int = 0
    failed: int = 0
    skipped: int = 0  # pulled, but never scanned, or being scanned: left alone
    finished: bool = True  # False: the deadline came first
    new_findings: dict[str, tuple[str, ...]] = field(default_factory=dict)  # repo@digest -> ids


class _ChunkReader(io.RawIOBase):
    """A readable stream over an ObjectStore stream's chunks (a GetObject body read a
    chunk at a time): what ``LayerSource.open`` hands the scanner."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # a generator's close runs its finally: the body is released
        super().close()


def _holds_nothing(inventory: Inventory) -> bool:
    """Whether every layer was read to its end and held no entry at all (an empty tar, as
    the conformance suite's "empty layer" image has): no software to list, so no SBOM of
    nothing and no report of nothing, and a referrers listing keeps exactly what its
    pushers put there."""
    return inventory.entries == 0 and not inventory.skipped and not inventory.packages


class NothingReadable(ValueError):
    """Not one layer of the image could be read (none is a tar, gzip or zstd stream)."""


def _require_something_read(sources: list[Any], inventory: Inventory) -> None:
    """A scan that could read no layer at all is a failed scan (scan.failed, the reasons in
    the record), not a report: an SBOM of nothing and a report of no findings would look
    like a clean image to a person and to a scan policy. Such manifests are test tools'
    images of random bytes, and artifacts that call their blobs layers; they get no
    referrers from us, so a referrers listing holds only what their pushers put there.
    (An image manifest without layers is not scanned at all: is_platform_image.)"""
    if not sources or inventory.packages or inventory.distro is not None:
        return
    unreadable = {gap.layer: gap.reason for gap in inventory.skipped if not gap.path}
    if all(source.digest in unreadable for source in sources):
        first = unreadable[sources[0].digest]
        raise NothingReadable(f"no layer of the image could be read ({len(sources)} tried; first: {first})")


def _now_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_attestation(descriptor: dict[str, Any]) -> bool:
    annotations = descriptor.get("annotations")
    return isinstance(annotations, dict) and annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION_TYPE


def is_platform_image(media_type: str, document: dict[str, Any]) -> bool:
    """Whether an image manifest is an image to scan: no artifactType, no subject, an image
    config, and at least one layer, tar layers only (non-distributable ones allowed; they
    are skipped). A manifest without layers holds no software to list (config-only
    manifests are artifacts in all but name): an SBOM of nothing and a report of no
    findings would only add referrers nobody asked for."""
    if media_type not in media_types.IMAGE_MANIFESTS:
        return False
    if document.get("artifactType") or document.get("subject") is not None:
        return False
    config = document.get("config")
    if not isinstance(config, dict) or config.get("mediaType") not in IMAGE_CONFIGS:
        return False
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        return False
    return all(
        isinstance(layer, dict)
        and (
            layer.get("mediaType") in TAR_LAYERS
            or layer.get("mediaType") in media_types.NON_DISTRIBUTABLE_LAYERS
        )
        for layer in layers
    )


class ScanService:
    def __init__(
        self,
        objects: ObjectStore,
        manifests: ManifestService,
        blobs: BlobService,
        index: ManifestIndex,
        store: ScanStore,
        settings: Settings,
        *,
        database: Callable[[], Any],
        pulls: PullStore | None = None,
        writable: Callable[[str], bool] = lambda repository: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._manifests = manifests
        self._blobs = blobs
        self._index = index
        self._store = store
        self._settings = settings
        # The OSV database (vulnerabilities/database.py), built on first use and cached
        # by the caller (registry.py) per process.
        self._database = database
        self._pulls = pulls
        # False for repositories clients may not push into (a pull-through cache prefix).
        self._writable = writable
        self._clock = clock

    # --- the scan record -------------------------------------------------------------

    def record(self, repository: str, digest: str) -> ScanRecord | None:
        fields = self._store.get(repository, digest)
        return ScanRecord(**fields) if fields else None

    # --- what is scanned ---------------------------------------------------------------

    def _document(self, record: ManifestRecord) -> dict[str, Any]:
        body = record.body if record.body is not None else self._objects.read(record.body_key or "")
        document = json.loads(body)  # validated at push (manifests.parse_manifest)
        return document if isinstance(document, dict) else {}

    def _platform_images(
        self, repository: str, record: ManifestRecord, depth: int = 0
    ) -> list[tuple[ManifestRecord, dict[str, Any]]]:
        document = self._document(record)
        if record.media_type in media_types.INDEXES:
            if depth >= MAX_INDEX_DEPTH:
                return []
            found: dict[str, tuple[ManifestRecord, dict[str, Any]]] = {}
            for child in document.get("manifests") or []:
                if not isinstance(child, dict) or is_attestation(child) or child.get("artifactType"):
                    continue
                child_record = self._index.get_manifest(repository, str(child.get("digest")))
                if child_record is None:
                    continue
                for image in self._platform_images(repository, child_record, depth + 1):
                    found.setdefault(image[0].digest, image)
            return list(found.values())
        return [(record, document)] if is_platform_image(record.media_type, document) else []

    def platform_digests(self, repository: str, reference: str) -> list[str]:
        """The platform images a tag or digest names (one for an image, each platform of an
        index): what `skyport vulns` reports on. ManifestUnknown if there is none."""
        record = self._manifests.resolve(repository, reference)
        return [image.digest for image, _ in self._platform_images(repository, record)]

    # --- scanning ------------------------------------------------------------------------

    def on_event(self, event: RegistryEvent, deadline: float | None = None) -> list[ScanResult]:
        """A registry event from the scan queue: a pushed image is scanned, everything else
        (and every event while SKYPORT_SCAN_ON_PUSH is off) ignored. A manifest deleted since
        its push is not scanned, and nothing is pushed for it."""
        from ..events import MANIFEST_PUSHED

        if event.type != MANIFEST_PUSHED or not event.digest or not self._settings.scan_on_push:
            return []
        if event.subject or event.artifact_type in (SBOM_ARTIFACT_TYPE, REPORT_ARTIFACT_TYPE):
            return []  # a referrer (ours among them): never an image to scan
        try:
            return self._scan_reference(event.repository, event.digest, False, deadline)
        except ManifestUnknown:
            return []

    def scan(
        self, repository: str, reference: str, *, force: bool = False, deadline: float | None = None
    ) -> list[ScanResult]:
        """Scan each platform image ``reference`` names (module docstring); with ``force``,
        again even if scanned (the report replaced, the SBOM kept). ``deadline``: a
        ``time.monotonic()`` after which layers are no longer read (the rest is Skipped).
        ManifestUnknown if the manifest does not exist."""
        return self._scan_reference(repository, reference, force, deadline)

    def _scan_reference(
        self, repository: str, reference: str, force: bool, deadline: float | None
    ) -> list[ScanResult]:
        record = self._manifests.resolve(repository, reference)
        if not self._writable(repository):
            return []
        return [
            self._scan_one(repository, image, document, force=force, deadline=deadline)
            for image, document in self._platform_images(repository, record)
        ]

    def _scan_one(
        self,
        repository: str,
        image: ManifestRecord,
        document: dict[str, Any],
        *,
        force: bool,
        deadline: float | None,
    ) -> ScanResult:
        owner = uuid.uuid4().hex
        now_ms = int(self._clock() * 1000)
        lease_ms = self._settings.scan_lease_seconds * 1000
        started, before = self._store.begin(repository, image.digest, owner, now_ms, lease_ms, force)
        previous = ScanRecord(**before) if before else None
        if not started:
            if previous is not None and previous.status == COMPLETE:
                return ScanResult(
                    repository,
                    image.digest,
                    ALREADY_SCANNED,
                    previous.sbom_digest,
                    previous.report_digest,
                    previous.counts,
                )
            return ScanResult(repository, image.digest, RUNNING)
        try:
            return self._run(repository, image, document, owner, previous, deadline)
        except Exception as error:  # noqa: BLE001 - any failure is the scan's outcome (scan.failed)
            reason = f"{type(error).__name__}: {error}"[:1000]
            log.warning("scan of %s@%s failed: %s", repository, image.digest, reason)
            try:
                self._store.fail(repository, image.digest, owner, reason)
            except StorageUnavailable:
                pass  # the lease runs out; the retry below starts again
            if isinstance(error, StorageUnavailable):
                raise  # retryable: the queue tries the event again
            return ScanResult(repository, image.digest, SCAN_FAILED, error=reason)

    def _limits(self, deadline: float | None) -> Any:
        from .layers import ScanLimits

        # Settings of 0 keep the scanner's defaults (suited to the scan function's Lambda).
        bounds = {
            "max_layer_bytes": self._settings.scan_max_layer_bytes,
            "max_expanded_bytes": self._settings.scan_max_total_bytes,
        }
        return ScanLimits(deadline=deadline, **{name: value for name, value in bounds.items() if value})

    def _layers(self, repository: str, document: dict[str, Any]) -> tuple[list[Any], list[Skipped]]:
        """The image's layers as LayerSources (base first), and those the registry does not
        hold (non-distributable layers live elsewhere: reported, never fetched)."""
        from .layers import LayerSource

        sources, skipped = [], []
        for layer in document.get("layers") or []:
            digest, media_type, size = layer.get("digest"), layer.get("mediaType"), layer.get("size")
            if media_type in media_types.NON_DISTRIBUTABLE_LAYERS:
                skipped.append(Skipped(digest, "", "non-distributable layer: not held by the registry"))
                continue
            blob = self._blobs.stat(repository, digest)
            sources.append(
                LayerSource(
                    digest=digest,
                    media_type=media_type,
                    size=size if isinstance(size, int) else blob.size,
                    open=lambda key=blob.key: io.BufferedReader(
                        _ChunkReader(self._objects.stream(key)), READ_CHUNK
                    ),
                )
            )
        return sources, skipped

    def _run(
        self,
        repository: str,
        image: ManifestRecord,
        document: dict[str, Any],
        owner: str,
        previous: ScanRecord | None,
        deadline: float | None,
    ) -> ScanResult:
        from ..vulnerabilities.matching import build_report
        from .sbom import cyclonedx_json, inventory_from_sbom

        now = datetime.fromtimestamp(self._clock(), UTC)
        inventory: Inventory | None = None
        sbom_digest = previous.sbom_digest if previous else None
        pushed_sbom = False
        if sbom_digest:
            # A re-scan: the stored SBOM, not the layers (the SBOM is never touched).
            data = self._artifact_layer(repository, sbom_digest, SBOM_ARTIFACT_TYPE)
            if data is not None:
                inventory = inventory_from_sbom(data)
            else:
                sbom_digest = None  # deleted by hand meanwhile: scan the layers again
        if inventory is None:
            from .image import scan_image

            sources, not_held = self._layers(repository, document)
            inventory = scan_image(sources, self._limits(deadline))
            if _holds_nothing(inventory):
                self._store.forget(repository, image.digest)  # our lease: nothing to record
                return ScanResult(repository, image.digest, NOTHING_TO_SCAN)
            _require_something_read(sources, inventory)
            inventory.skipped[:0] = not_held
            sbom = cyclonedx_json(inventory, repository=repository, digest=image.digest)
            sbom_digest = self._push_artifact(
                repository, image, SBOM_ARTIFACT_TYPE, sbom, "sbom.cdx.json", {CREATED: _now_rfc3339(now)}
            )
            pushed_sbom = True
        database = self._database()
        report: Report = build_report(repository, image.digest, inventory, database, now)
        counts = report.counts()
        annotations = {
            CREATED: report.scanned_at or _now_rfc3339(now),
            DATABASE_ANNOTATION: report.database,
            **{COUNT_ANNOTATION.format(severity=name.lower()): str(counts[name]) for name in SEVERITIES},
        }
        report_bytes = json.dumps(report.to_dict(), separators=(",", ":")).encode()
        report_digest = self._push_artifact(
            repository, image, REPORT_ARTIFACT_TYPE, report_bytes, "vulnerability-report.json", annotations
        )
        # A re-scan: the report this one replaces (the same one when nothing changed within
        # the second: the same bytes, the same digest).
        earlier = previous.report_digest if previous else None
        replaced = earlier if earlier != report_digest else None
        new_findings: tuple[str, ...] | None = None
        if earlier:
            old = self._read_report(repository, earlier)
            old_ids = {finding.id for finding in old.findings} if old else set()
            new_findings = tuple(sorted({finding.id for finding in report.findings} - old_ids))
        written = self._store.complete(
            repository,
            image.digest,
            owner,
            sbom_digest=sbom_digest or "",
            report_digest=report_digest,
            counts=counts,
            scanned_at=report.scanned_at or _now_rfc3339(now),
            database=report.database,
            new_findings=new_findings,
        )
        if not written:
            # The manifest was deleted meanwhile (its record with it), or our lease ran
            # out and another scan took over: what this one pushed goes again.
            self._delete_quietly(repository, report_digest)
            if pushed_sbom and sbom_digest:
                self._delete_quietly(repository, sbom_digest)
            return ScanResult(repository, image.digest, SUPERSEDED)
        if replaced:
            self._delete_quietly(repository, replaced)
        return ScanResult(repository, image.digest, SCANNED, sbom_digest, report_digest, counts, new_findings)

    # --- artifacts, through the registry's own services -----------------------------------

    def _store_blob(self, repository: str, data: bytes) -> str:
        """Put ``data`` in the repository as a blob, as a push would (blob record first
        writer wins, then the link); linked without a copy if the registry holds it."""
        digest = _sha256(data)
        if self._blobs.mount(repository, digest, None, None, len(data)) is not None:
            return digest
        key = keys.blob_object(uuid.uuid4().hex)
        self._objects.put(key, data)
        self._blobs.register(repository, BlobRecord(digest, len(data), key))
        return digest

    def _push_artifact(
        self,
        repository: str,
        subject: ManifestRecord,
        artifact_type: str,
        data: bytes,
        title: str,
        annotations: dict[str, str],
    ) -> str:
        """An OCI 1.1 artifact (image-spec "Guidelines for Artifact Usage": artifactType,
        the empty config, one layer) whose subject is ``subject``; its digest."""
        layer_digest = self._store_blob(repository, data)
        self._store_blob(repository, EMPTY_JSON)
        document = {
            "schemaVersion": 2,
            "mediaType": media_types.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": EMPTY_DESCRIPTOR,
            "layers": [
                {
                    "mediaType": artifact_type,
                    "digest": layer_digest,
                    "size": len(data),
                    "annotations": {TITLE: title},
                }
            ],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": annotations,
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        return self._manifests.push(repository, _sha256(body), media_types.OCI_MANIFEST, body).digest

    def _delete_quietly(self, repository: str, digest: str) -> None:
        try:
            self._manifests.delete(repository, digest)
        except ManifestUnknown:
            pass
        except Exception:  # noqa: BLE001 - a leftover referrer is visible, never harmful
            log.warning("could not delete %s@%s", repository, digest, exc_info=True)

    def _artifact_layer(self, repository: str, digest: str, artifact_type: str) -> bytes | None:
        """The one layer of our artifact ``digest``; None when it is gone or is not one."""
        record = self._index.get_manifest(repository, digest)
        if record is None or record.artifact_type != artifact_type:
            return None
        layers = self._document(record).get("layers")
        if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
            return None
        size = layers[0].get("size")
        if not isinstance(size, int) or size > MAX_ARTIFACT_BYTES:
            return None
        try:
            blob = self._blobs.stat(repository, str(layers[0].get("digest")))
        except Exception:  # noqa: BLE001 - BlobUnknown: the layer was deleted by hand
            return None
        if blob.size > MAX_ARTIFACT_BYTES:
            return None
        return self._objects.read(blob.key)

    def _read_report(self, repository: str, digest: str) -> Report | None:
        data = self._artifact_layer(repository, digest, REPORT_ARTIFACT_TYPE)
        if data is None:
            return None
        try:
            return Report.from_dict(json.loads(data))
        except ValueError:
            return None

    # --- reading results ----------------------------------------------------------------

    def report(self, repository: str, digest: str) -> Report | None:
        """The current report of platform image ``digest`` (the one its scan record names:
        module docstring); None when it was never scanned to the end."""
        record = self.record(repository, digest)
        if record is None or not record.report_digest:
            return None
        return self._read_report(repository, record.report_digest)

    def policy_report(self, repository: str, digest: str) -> Report | MissingReport | None:
        """What a scan policy judges ``digest`` by: its current report; None when it was
        never scanned to the end; MissingReport when its scan record names a report that
        is gone. The record is read once more before saying so: a re-scan points the
        record at its new report before deleting the old one, so a reader that read the
        record just before may find the old one gone."""
        gone: str | None = None
        for _ in range(2):
            record = self.record(repository, digest)
            if record is None or not record.report_digest:
                return None
            if record.report_digest == gone:
                break
            report = self._read_report(repository, record.report_digest)
            if report is not None:
                return report
            gone = record.report_digest
        return MissingReport(gone or "")

    def sbom(self, repository: str, digest: str) -> bytes | None:
        """The CycloneDX JSON of platform image ``digest``; None when there is none."""
        record = self.record(repository, digest)
        if record is None or not record.sbom_digest:
            return None
        return self._artifact_layer(repository, record.sbom_digest, SBOM_ARTIFACT_TYPE)

    # --- the daily re-scan --------------------------------------------------------------

    def _repositories(self) -> Iterator[str]:
        after: str | None = None
        while True:
            page = self._index.list_repositories(1000, after)
            yield from page.items
            after = page.next_after
            if after is None:
                return

    def rescan_recent(
        self, *, within_days: int | None = None, deadline: float | None = None
    ) -> RescanSummary:
        """Re-scan every scanned platform image pulled within ``within_days`` (default
        SKYPORT_RESCAN_PULLED_DAYS; last-pull records, skyport/pulls.py): new reports,
        and scan.completed events naming the newly found ids. Stops starting scans at
        ``deadline`` (a ``time.monotonic()``); the next day's run starts over."""
        assert self._pulls is not None, "the registry wires the pull store"
        days = self._settings.rescan_pulled_days if within_days is None else within_days
        cutoff_ms = int(self._clock() * 1000) - days * 86_400_000
        summary = RescanSummary()
        done: set[tuple[str, str]] = set()
        for repository in self._repositories():
            if not self._writable(repository):
                continue
            for digest, pulled_ms in self._pulls.last_pulls(repository):
                if pulled_ms < cutoff_ms:
                    continue
                try:
                    record = self._manifests.resolve(repository, digest)
                except ManifestUnknown:
                    continue  # a stray record: retention removes those
                for image, document in self._platform_images(repository, record):
                    if (repository, image.digest) in done:
                        continue
                    done.add((repository, image.digest))
                    if deadline is not None and time.monotonic() > deadline:
                        summary.finished = False
                        return summary
                    # Never scanned (scan on push off, or pushed before it): left to `skyport
                    # scan`. A failed scan is tried again; a running one keeps its lease
                    # (_scan_one answers RUNNING).
                    existing = self.record(repository, image.digest)
                    if existing is None:
                        summary.skipped += 1
                        continue
                    result = self._scan_one(repository, image, document, force=True, deadline=deadline)
                    if result.status == SCANNED:
                        summary.rescanned += 1
                        if result.new_findings:
                            summary.new_findings[f"{repository}@{image.digest}"] = result.new_findings
                    elif result.status == SCAN_FAILED:
                        summary.failed += 1
                    else:
                        summary.skipped += 1
        return summary
