"""Copy OSV's per-ecosystem exports into the bucket (``osv/<Ecosystem>/all.zip``).

``source`` is either OSV's export site (deployed: ``https://osv-vulnerabilities.storage.
googleapis.com``, which serves ``<Ecosystem>/all.zip`` per ecosystem) or any http(s) server
laid out the same way, or a directory of ``<Ecosystem>/<ID>.json`` records (``skyport serve``
and the tests: the shipped data set, :func:`shipped_data`), which is zipped here. Either way
the same zip lands in the bucket, and scans read it with the same code (database.py).

For each ecosystem:

1. Fetch. Over HTTP with ``If-None-Match`` / ``If-Modified-Since`` from the last run's
   validators (``osv/index.json``): a 304 costs nothing more. The body is streamed to a
   temporary file (``/tmp`` in Lambda) in 1 MiB reads, never held in memory; at most
   ``max_bytes`` are accepted.
2. Validate, before anything is replaced: a zip (its central directory is at the end, so a
   truncated download is no zip), whose every ``.json`` member reads back with a good CRC
   within the record size cap, holding at least one OSV record. Records that do not parse
   are counted (``malformed``), as the loader counts them. A download that fails any of
   this leaves the previous copy in place and is reported in ``failed``.
3. Upload, only if the content changed (sha256): one PutObject up to a part's size, else
   an S3 multipart upload of PART_SIZE parts read from the temporary file (memory: one
   part). S3 makes the new object visible only when the upload completes, so a reader
   sees the old zip or the new one, never a mix; a failed upload is aborted.
4. Record it in ``osv/index.json`` (sha256, size, record counts, newest ``modified``, the
   validators), written once at the end of the run. The mirror is the index's only
   writer (the function runs with a reserved concurrency of 1).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..storage import keys
from ..storage.ports import ObjectMissing, StorageUnavailable
from .osv import ECOSYSTEM_NAME, MAX_RECORD_BYTES, MalformedRecord, is_url_source, parse_json

OSV_EXPORTS = "https://osv-vulnerabilities.storage.googleapis.com"
# The ecosystems, by OSV's export names (each release's records are in its base
# ecosystem's export: "Debian:12" records in Debian/all.zip).
DEFAULT_ECOSYSTEMS = ("Debian", "Ubuntu", "Alpine", "PyPI", "npm", "Maven", "Go")
READ_CHUNK = 1024 * 1024
PART_SIZE = 8 * 1024 * 1024  # S3 multipart: >= 5 MiB but the last
MAX_EXPORT_BYTES = 4 * 1024**3  # the biggest export (npm) is well under this
MAX_MEMBERS = 2_000_000  # npm's export has ~220,000 records
# What one export may expand to, all records together (npm's: about 1 GiB): a zip bomb
# stops here, not when /tmp or the function's time runs out.
MAX_EXPANDED_BYTES = 16 * 1024**3


class MirrorError(Exception):
    """One ecosystem could not be mirrored; the previous copy stays."""


@dataclass
class MirrorResult:
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # ecosystem -> why
    records: dict[str, int] = field(default_factory=dict)  # of updated ecosystems
    malformed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "records": self.records,
            "malformed": self.malformed,
        }


def shipped_data() -> Path:
    """The small OSV data set shipped with the core (tests and ``skyport serve``)."""
    return Path(__file__).with_name("sample_osv")


def is_url(source: str) -> bool:
    return is_url_source(source)


@dataclass
class _Export:
    file: IO[bytes]
    size: int
    sha256: str
    validator: dict[str, str]


@dataclass
class _Contents:
    records: int
    malformed: int
    newest: str


def mirror(
    source: str,
    store: Any,
    ecosystems: Sequence[str] = DEFAULT_ECOSYSTEMS,
    *,
    timeout: float = 60.0,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> MirrorResult:
    """Mirror each ecosystem's export from ``source`` (a URL or a directory) into the bucket
    behind ``store`` (an ObjectStore). Errors of one ecosystem are reported in ``failed``
    and never stop the others; only a failure to read or write the index raises."""
    result = MirrorResult()
    index = _read_index(store)
    changed = False
    for ecosystem in ecosystems:
        if not ECOSYSTEM_NAME.fullmatch(ecosystem):
            result.failed[ecosystem] = "not an OSV ecosystem name"
            continue
        entry = index.get(ecosystem) or {}
        try:
            export = (
                _download(source, ecosystem, entry.get("validator") or {}, timeout, max_bytes)
                if is_url(source)
                else _zip_directory(Path(source) / ecosystem)
            )
        except MirrorError as error:
            result.failed[ecosystem] = str(error)
            continue
        if export is None:  # 304 Not Modified
            result.unchanged.append(ecosystem)
            continue
        try:
            with export.file:
                contents = _validate(export.file)
                if export.sha256 == entry.get("sha256"):
                    result.unchanged.append(ecosystem)
                    if export.validator != entry.get("validator"):
                        index[ecosystem] = {**entry, "validator": export.validator}
                        changed = True
                    continue
                _upload(store, keys.osv_export_object(ecosystem), export)
        except MirrorError as error:
            result.failed[ecosystem] = str(error)
            continue
        except StorageUnavailable as error:
            result.failed[ecosystem] = f"bucket: {error}"
            continue
        index[ecosystem] = {
            "sha256": export.sha256,
            "size": export.size,
            "records": contents.records,
            "malformed": contents.malformed,
            "modified": contents.newest,
            "validator": export.validator,
            "source": "url" if is_url(source) else "directory",
            "mirroredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        changed = True
        result.updated.append(ecosystem)
        result.records[ecosystem] = contents.records
        result.malformed[ecosystem] = contents.malformed
    if changed:
        body = json.dumps({"ecosystems": index}, indent=1, sort_keys=True).encode()
        store.put(keys.OSV_INDEX_OBJECT, body)
    return result


def _read_index(store: Any) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(store.read(keys.OSV_INDEX_OBJECT, may_be_missing=True))
    except ObjectMissing:
        return {}
    except ValueError:
        return {}  # a damaged index: every ecosystem is fetched again and the index rewritten
    ecosystems = data.get("ecosystems") if isinstance(data, dict) else None
    if not isinstance(ecosystems, dict):
        return {}
    return {name: entry for name, entry in ecosystems.items() if isinstance(entry, dict)}


# --- fetching --------------------------------------------------------------------------


def _download(
    source: str, ecosystem: str, validator: dict[str, str], timeout: float, max_bytes: int
) -> _Export | None:
    url = f"{source.rstrip('/')}/{urllib.parse.quote(ecosystem)}/all.zip"
    headers = {"User-Agent": "skyport-osv-mirror"}
    if validator.get("etag"):
        headers["If-None-Match"] = validator["etag"]
    if validator.get("lastModified"):
        headers["If-Modified-Since"] = validator["lastModified"]
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only (is_url)
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return None
        raise MirrorError(f"{url}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise MirrorError(f"{url}: {error}") from None
    spool = tempfile.TemporaryFile()
    digest = hashlib.sha256()
    size = 0
    try:
        with response:
            expected = response.headers.get("Content-Length")
            while chunk := response.read(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise MirrorError(f"{url}: larger than {max_bytes} bytes")
                digest.update(chunk)
                spool.write(chunk)
            new_validator = {
                name: value
                for name, value in (
                    ("etag", response.headers.get("ETag")),
                    ("lastModified", response.headers.get("Last-Modified")),
                )
                if value
            }
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise MirrorError(f"{url}: {size} bytes of {expected}: truncated")
    except (OSError, http.client.HTTPException) as error:
        spool.close()
        raise MirrorError(f"{url}: download broke off: {error!r}") from None
    except MirrorError:
        spool.close()
        raise
    spool.seek(0)
    return _Export(spool, size, digest.hexdigest(), new_validator)


def _zip_directory(directory: Path) -> _Export:
    """A directory of records as a zip like OSV's export (one ``<ID>.json`` per record),
    byte for byte the same for the same files (sorted, fixed timestamps): an unchanged
    directory is an unchanged export."""
    if not directory.is_dir():
        raise MirrorError(f"no directory {directory.name} in the OSV data set")
    spool = tempfile.TemporaryFile()
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.glob("*.json")):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.sha256()
    while chunk := spool.read(READ_CHUNK):
        digest.update(chunk)
    spool.seek(0)
    return _Export(spool, size, digest.hexdigest(), {"sha256": digest.hexdigest()})


# --- validating and storing ---------------------------------------------------------------


def _validate(file: IO[bytes]) -> _Contents:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise MirrorError(f"not a zip (truncated?): {error}") from None
    contents = _Contents(0, 0, "")
    expanded = 0
    with archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".json")]
        if len(members) > MAX_MEMBERS:
            raise MirrorError(f"{len(members)} records: more than {MAX_MEMBERS}")
        for info in members:
            try:
                with archive.open(info) as stream:
                    raw = stream.read(MAX_RECORD_BYTES + 1)
                    if len(raw) <= MAX_RECORD_BYTES:
                        stream.read(1)  # reaches the end: zipfile checks the CRC there
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as error:
                # A damaged member: the zip as a whole is not to be trusted.
                raise MirrorError(f"{info.filename}: {error}") from None
            expanded += len(raw)
            if expanded > MAX_EXPANDED_BYTES:
                raise MirrorError(f"records expand to more than {MAX_EXPANDED_BYTES} bytes")
            try:
                advisory = parse_json(raw)
            except MalformedRecord:
                contents.malformed += 1
                continue
            contents.records += 1
            contents.newest = max(contents.newest, advisory.modified)
    if contents.records == 0:
        raise MirrorError("no OSV record in the export")
    file.seek(0)
    return contents


def _upload(store: Any, key: str, export: _Export) -> None:
    export.file.seek(0)
    if export.size <= PART_SIZE:
        store.put(key, export.file.read())
        return
    multipart_id = store.start_multipart(key)
    try:
        etags = []
        number = 1
        while part := export.file.read(PART_SIZE):
            etags.append(store.upload_part(key, multipart_id, number, part))
            number += 1
        store.complete_multipart(key, multipart_id, etags)
    except BaseException:
        store.abort_multipart(key, multipart_id)
        raise
