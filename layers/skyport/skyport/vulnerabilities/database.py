"""The OSV data a scan matches against, indexed by (OSV ecosystem, normalised name).

Two ways in, one index:

- :meth:`OsvDatabase.from_store`: the bucket's mirrored exports (``osv/<Ecosystem>/all.zip``
  and ``osv/index.json``, storage/keys.py), what scans use, deployed, under ``skyport serve``
  and in the tests (which mirror the shipped data set into moto first: the same code).
- :meth:`OsvDatabase.from_advisories`: records already parsed (unit tests of matching).

Loading is lazy and per ecosystem: a scan of a Debian + Python image reads the Debian and
PyPI exports and nothing else. An ecosystem is read once per process per version (the
sha256 the mirror wrote in ``osv/index.json``); the index is read again at most every
``refresh_seconds``, and an ecosystem whose version changed is read again at its next use.
Keep ONE database per process (next to the object store) so that this cache is shared.

Memory: an export is streamed from S3 into a temporary file (``/tmp`` in Lambda; the
largest export, npm's, is a few hundred MiB: the scan function's ephemeral storage must hold
it), never held in memory. What stays in memory is the name index (for each
(ecosystem, name) the zip members that name it: tens of bytes per record) and the records
parsed for the packages a scan asked about (an LRU of RECORD_CACHE records). Records are
read from the zip as untrusted input (osv.py): a malformed one is counted in ``malformed``
and skipped; withdrawn ones are left out.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import IO, Any

from ..storage import keys
from ..storage.ports import ObjectMissing
from .osv import MAX_RECORD_BYTES, Advisory, MalformedRecord, base_ecosystem, normalise_name, parse_json

RECORD_CACHE = 4096  # parsed records kept per process (a few KiB each)


class _Ecosystem:
    """One base ecosystem's records: a name index over some storage of records."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.names: dict[tuple[str, str], list[str]] = {}  # (ecosystem, name) -> record keys
        self.malformed = 0
        self.withdrawn = 0
        self.newest = ""  # the newest "modified" seen

    def add(self, key: str, advisory: Advisory, base: str) -> None:
        if advisory.withdrawn:
            self.withdrawn += 1
            return
        self.newest = max(self.newest, advisory.modified)
        for affected in advisory.affected:
            if base_ecosystem(affected.ecosystem) != base:
                continue
            slot = self.names.setdefault(
                (affected.ecosystem, normalise_name(affected.ecosystem, affected.name)), []
            )
            if key not in slot:
                slot.append(key)

    def record(self, key: str) -> Advisory | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _InMemory(_Ecosystem):
    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.records: dict[str, Advisory] = {}

    def record(self, key: str) -> Advisory | None:
        return self.records.get(key)


class _Zipped(_Ecosystem):
    """Records in an export zip on local disk, parsed when a scan asks for them."""

    def __init__(self, version: str, file: IO[bytes]) -> None:
        super().__init__(version)
        self._file = file
        self._zip = zipfile.ZipFile(file)
        self._lock = threading.Lock()  # one reader of the zip file at a time
        self._cache: OrderedDict[str, Advisory | None] = OrderedDict()

    def members(self) -> list[str]:
        return [info.filename for info in self._zip.infolist() if info.filename.endswith(".json")]

    def read(self, member: str) -> Advisory:
        with self._lock, self._zip.open(member) as stream:
            # Never more than a record may be, whatever the zip's header claims.
            raw = stream.read(MAX_RECORD_BYTES + 1)
        return parse_json(raw)

    def record(self, key: str) -> Advisory | None:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            advisory: Advisory | None = self.read(key)
        except (MalformedRecord, zipfile.BadZipFile, OSError, KeyError, zlib.error):
            advisory = None
        with self._lock:
            self._cache[key] = advisory
            while len(self._cache) > RECORD_CACHE:
                self._cache.popitem(last=False)
        return advisory

    def close(self) -> None:
        self._zip.close()
        self._file.close()


def index_zip(file: IO[bytes], base: str, version: str) -> _Zipped:
    """Read every record of an export once, to build the name index; malformed members
    (bad JSON, a CRC error, a record over the size cap) are counted, never raised."""
    data = _Zipped(version, file)
    for member in data.members():
        try:
            advisory = data.read(member)
        except (MalformedRecord, zipfile.BadZipFile, OSError, EOFError, zlib.error):
            data.malformed += 1
            continue
        data.add(member, advisory, base)
    return data


class OsvDatabase:
    """``advisories(ecosystem, name)`` for the matcher; ``has(base)``; ``version``."""

    def __init__(self, store: Any | None = None, *, refresh_seconds: float = 300.0) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, Any]] = {}
        self._index_read_at: float | None = None
        self._ecosystems: dict[str, _Ecosystem] = {}
        self._unreadable: dict[str, str] = {}  # base -> the index version that could not be read
        # Exports downloaded by this process (each costs a GetObject and an indexing pass):
        # one per ecosystem and mirrored version is the contract.
        self.downloads = 0

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_store(cls, store: Any, *, refresh_seconds: float = 300.0) -> OsvDatabase:
        """The mirrored exports in the bucket behind ``store`` (an ObjectStore), loaded lazily."""
        return cls(store, refresh_seconds=refresh_seconds)

    @classmethod
    def from_advisories(cls, advisories: Iterable[Advisory]) -> OsvDatabase:
        """Records already parsed, every ecosystem they name present."""
        database = cls(None)
        by_base: dict[str, _InMemory] = {}
        for number, advisory in enumerate(advisories):
            key = f"{number}:{advisory.id}"
            for base in {base_ecosystem(a.ecosystem) for a in advisory.affected}:
                data = by_base.setdefault(base, _InMemory("in-memory"))
                data.records[key] = advisory
                data.add(key, advisory, base)
        database._ecosystems = dict(by_base)
        database._index = {
            base: {"sha256": "in-memory", "modified": data.newest} for base, data in by_base.items()
        }
        database._index_read_at = float("inf")
        return database

    # --- what the matcher asks ------------------------------------------------------

    def has(self, base: str) -> bool:
        """Whether data for this base ecosystem ("Debian", "PyPI") is mirrored and readable
        (loading it if needed): when False, the matcher says so in the report."""
        return self._load(base) is not None

    def advisories(self, ecosystem: str, name: str) -> list[Advisory]:
        """The records whose ``affected`` names ``name`` (normalised) in ``ecosystem``
        ("Debian:12"); withdrawn and malformed records are never among them."""
        data = self._load(base_ecosystem(ecosystem))
        if data is None:
            return []
        found = []
        for key in data.names.get((ecosystem, name), ()):
            advisory = data.record(key)
            if advisory is not None and not advisory.withdrawn:
                found.append(advisory)
        return found

    @property
    def version(self) -> str:
        """For Report.database: "osv <newest record's modified time>" over the mirrored
        ecosystems ("osv (no data)" before the first mirror)."""
        index = self._current_index()
        newest = max((str(entry.get("modified") or "") for entry in index.values()), default="")
        return f"osv {newest}" if newest else "osv (no data)"

    @property
    def malformed(self) -> int:
        return sum(data.malformed for data in self._ecosystems.values())

    def loaded(self) -> list[str]:
        """The base ecosystems read so far (memory is spent on these only)."""
        return sorted(self._ecosystems)

    # --- loading --------------------------------------------------------------------

    def _current_index(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            if self._store is not None and (
                self._index_read_at is None or now - self._index_read_at >= self._refresh_seconds
            ):
                self._index = self._read_index()
                self._index_read_at = now
            return self._index

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self._store.read(keys.OSV_INDEX_OBJECT, may_be_missing=True)
        except ObjectMissing:
            return {}
        try:
            ecosystems = json.loads(raw).get("ecosystems", {})
        except (ValueError, AttributeError):
            return {}
        if not isinstance(ecosystems, dict):
            return {}
        return {name: entry for name, entry in ecosystems.items() if isinstance(entry, dict)}

    def _load(self, base: str) -> _Ecosystem | None:
        entry = self._current_index().get(base)
        if entry is None:
            return None
        version = str(entry.get("sha256") or "")
        with self._lock:
            data = self._ecosystems.get(base)
            if data is not None and (self._store is None or data.version == version):
                return data
            if self._store is None or self._unreadable.get(base) == version:
                return data
            fresh = self._fetch(base, version)
            if fresh is None:
                # Gone or not a zip: not asked again for this version (a scan asks once per
                # package); keep what we had, if anything.
                self._unreadable[base] = version
                return data
            if data is not None:
                data.close()
            self._ecosystems[base] = fresh
            return fresh

    def _fetch(self, base: str, version: str) -> _Zipped | None:
        """Stream osv/<base>/all.zip to a temporary file and index it. It is named by the
        index's version even when the mirror replaced the zip after this process read the
        index: the next index read then loads it once more, rather than every call until."""
        self.downloads += 1
        spool = tempfile.TemporaryFile()
        try:
            for chunk in self._store.stream(keys.osv_export_object(base)):
                spool.write(chunk)
            spool.seek(0)
            return index_zip(spool, base, version)
        except (ObjectMissing, zipfile.BadZipFile, OSError, EOFError):
            spool.close()
            return None
        except BaseException:
            spool.close()
            raise
