"""The mirror: OSV-style exports served over HTTP by a local server (no network), the
shipped directory, unchanged exports skipped, and damaged downloads never replacing good
data; then the scans' database reading what it wrote, once per version."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from skyport.storage import keys
from skyport.vulnerabilities import mirror as mirror_module
from skyport.vulnerabilities.database import OsvDatabase
from skyport.vulnerabilities.mirror import mirror, shipped_data


def export(*records: dict, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return buffer.getvalue()


def pypi_record(record_id: str, fixed: str, modified: str = "2024-01-01T00:00:00Z") -> dict:
    return {
        "id": record_id,
        "modified": modified,
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "example"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }


class ExportServer:
    """A local stand-in for OSV's export site: GET /<Ecosystem>/all.zip with ETag and
    If-None-Match, and a way to break the body off (a truncated download)."""

    def __init__(self) -> None:
        self.exports: dict[str, bytes] = {}
        self.truncate_to: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append((self.path, self.headers.get("If-None-Match")))
                ecosystem = self.path.removeprefix("/").removesuffix("/all.zip")
                body = server.exports.get(ecosystem)
                if body is None:
                    self.send_error(404)
                    return
                etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body if server.truncate_to is None else body[: server.truncate_to])

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free one
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[ExportServer]:
    export_server = ExportServer()
    yield export_server
    export_server.close()


def index(store) -> dict:
    return json.loads(store.read(keys.OSV_INDEX_OBJECT))["ecosystems"]


def test_an_export_is_mirrored_then_skipped_while_unchanged(server, store) -> None:
    server.exports["PyPI"] = export(
        pypi_record("PYSEC-1", "1.0"), {"id": "broken"}, pypi_record("PYSEC-2", "2.0")
    )
    result = mirror(server.url, store, ["PyPI"])
    assert (result.updated, result.records, result.malformed) == (["PyPI"], {"PyPI": 2}, {"PyPI": 1})
    assert store.read(keys.osv_export_object("PyPI")) == server.exports["PyPI"]
    entry = index(store)["PyPI"]
    assert entry["records"] == 2 and entry["validator"]["etag"]

    again = mirror(server.url, store, ["PyPI"])
    assert (again.updated, again.unchanged) == ([], ["PyPI"])
    assert server.requests[-1] == ("/PyPI/all.zip", entry["validator"]["etag"])  # a conditional GET


def test_a_truncated_or_broken_download_never_replaces_the_previous_copy(server, store) -> None:
    good = export(pypi_record("PYSEC-1", "1.0"))
    server.exports["PyPI"] = good
    assert mirror(server.url, store, ["PyPI"]).updated == ["PyPI"]
    before = index(store)

    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0"), pypi_record("PYSEC-3", "3.0"))
    server.truncate_to = len(server.exports["PyPI"]) // 2
    result = mirror(server.url, store, ["PyPI"])
    assert result.updated == [] and "PyPI" in result.failed
    assert store.read(keys.osv_export_object("PyPI")) == good
    assert index(store) == before

    server.truncate_to = None
    for damaged in (b"not a zip at all", export()):  # garbage; a zip without records
        server.exports["PyPI"] = damaged
        result = mirror(server.url, store, ["PyPI"])
        assert "PyPI" in result.failed
        assert store.read(keys.osv_export_object("PyPI")) == good


def test_a_zip_with_a_damaged_record_is_refused(server, store) -> None:
    good = export(pypi_record("PYSEC-1", "1.0"))
    server.exports["PyPI"] = good
    mirror(server.url, store, ["PyPI"])
    damaged = bytearray(export(pypi_record("PYSEC-1", "1.0"), pypi_record("PYSEC-2", "2.0")))
    # The first member's data starts after its 30-byte local header and its name.
    offset = 30 + len("PYSEC-1.json") + 5
    damaged[offset] ^= 0xFF
    server.exports["PyPI"] = bytes(damaged)
    result = mirror(server.url, store, ["PyPI"])
    assert "PyPI" in result.failed
    assert store.read(keys.osv_export_object("PyPI")) == good


def test_a_zip_bomb_stops_at_the_expansion_cap(server, store, monkeypatch) -> None:
    monkeypatch.setattr(mirror_module, "MAX_EXPANDED_BYTES", 1_000_000)
    padding = {"details": " " * 600_000}  # compresses to almost nothing
    server.exports["PyPI"] = export(
        {**pypi_record("PYSEC-1", "1.0"), **padding}, {**pypi_record("PYSEC-2", "1.0"), **padding}
    )
    result = mirror(server.url, store, ["PyPI"])
    assert "expand to more than" in result.failed["PyPI"]
    assert len(server.exports["PyPI"]) < 10_000


def test_one_ecosystem_failing_does_not_stop_the_others(server, store) -> None:
    server.exports["npm"] = export({**pypi_record("GHSA-1", "1.0"), "affected": []})
    result = mirror(server.url, store, ["Missing", "npm", "../etc"])
    assert result.updated == ["npm"]
    assert set(result.failed) == {"Missing", "../etc"}
    assert "HTTP 404" in result.failed["Missing"]


def test_big_exports_go_up_as_multipart_uploads(server, store, monkeypatch) -> None:
    # Stored, not deflated: the zip spans several parts of the smallest size S3 takes.
    records = [{**pypi_record(f"PYSEC-{n}", "1.0"), "details": f"{n}" * 80_000} for n in range(150)]
    server.exports["PyPI"] = export(*records, compression=zipfile.ZIP_STORED)
    monkeypatch.setattr(mirror_module, "PART_SIZE", 5 * 1024 * 1024)
    assert len(server.exports["PyPI"]) > 2 * mirror_module.PART_SIZE
    assert mirror(server.url, store, ["PyPI"]).updated == ["PyPI"]
    assert store.read(keys.osv_export_object("PyPI")) == server.exports["PyPI"]


def test_the_shipped_directory_is_zipped_the_same_way_every_time(store) -> None:
    first = mirror(str(shipped_data()), store, ["Debian", "Go"])
    assert sorted(first.updated) == ["Debian", "Go"]
    second = mirror(str(shipped_data()), store, ["Debian", "Go"])
    assert (second.updated, sorted(second.unchanged)) == ([], ["Debian", "Go"])
    with zipfile.ZipFile(io.BytesIO(store.read(keys.osv_export_object("Go")))) as archive:
        assert sorted(archive.namelist()) == sorted(p.name for p in (shipped_data() / "Go").glob("*.json"))


def test_the_database_reads_each_version_once_and_picks_up_a_new_one(server, store) -> None:
    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0", "2024-01-01T00:00:00Z"))
    mirror(server.url, store, ["PyPI"])
    database = OsvDatabase.from_store(store, refresh_seconds=0)
    assert [a.id for a in database.advisories("PyPI", "example")] == ["PYSEC-1"]
    assert database.version == "osv 2024-01-01T00:00:00Z"
    assert [a.id for a in database.advisories("PyPI", "example")] == ["PYSEC-1"]
    assert database.downloads == 1  # same version: not read again

    server.exports["PyPI"] = export(
        pypi_record("PYSEC-1", "1.0", "2024-01-01T00:00:00Z"),
        pypi_record("PYSEC-2", "2.0", "2024-03-01T00:00:00Z"),
    )
    mirror(server.url, store, ["PyPI"])
    assert sorted(a.id for a in database.advisories("PyPI", "example")) == ["PYSEC-1", "PYSEC-2"]
    assert database.downloads == 2
    assert database.version == "osv 2024-03-01T00:00:00Z"


def test_the_database_counts_a_damaged_record_in_the_bucket_and_reads_the_rest(server, store) -> None:
    """The bucket's copy is checked when mirrored; should it be damaged anyway (written by
    something else), a scan still reads every good record and counts the rest."""
    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0"))
    mirror(server.url, store, ["PyPI"])
    damaged = bytearray(export(pypi_record("PYSEC-1", "1.0"), pypi_record("PYSEC-2", "2.0")))
    damaged[30 + len("PYSEC-1.json") + 5] ^= 0xFF
    store.put(keys.osv_export_object("PyPI"), bytes(damaged))
    database = OsvDatabase.from_store(store)
    assert [a.id for a in database.advisories("PyPI", "example")] == ["PYSEC-2"]
    assert database.malformed == 1


def test_a_zip_newer_than_the_index_this_process_read_is_loaded_once(server, store) -> None:
    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0"))
    mirror(server.url, store, ["PyPI"])
    database = OsvDatabase.from_store(store, refresh_seconds=3600)
    assert database.version  # reads the index now
    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0"), pypi_record("PYSEC-2", "2.0"))
    mirror(server.url, store, ["PyPI"])  # the zip and the index change; this process's index is stale
    first = database.advisories("PyPI", "example")
    assert database.advisories("PyPI", "example") == first
    assert database.downloads == 1  # not downloaded again for each package


def test_an_unreadable_export_is_a_gap_and_is_not_downloaded_again(server, store) -> None:
    server.exports["PyPI"] = export(pypi_record("PYSEC-1", "1.0"))
    mirror(server.url, store, ["PyPI"])
    store.put(keys.osv_export_object("PyPI"), b"overwritten with something else")
    database = OsvDatabase.from_store(store)
    assert not database.has("PyPI")
    assert database.advisories("PyPI", "example") == []
    assert not database.has("PyPI")
    assert database.downloads == 1
