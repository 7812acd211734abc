"""`skyport uploads expire [--dry-run] [--json]` on a served registry's table and bucket
(found as `make run`'s state file finds them, or by --table/--bucket and endpoints)."""

from __future__ import annotations

import json

import pytest
from cli_support import run_cli as run
from cli_support import table_flags, write_served_state
from skyport.registry import Registry

from .conftest import abandon, crash_leftovers, multipart_uploads, objects


@pytest.fixture
def target(registry: Registry) -> list[str]:
    return table_flags(registry.settings, with_bucket=True)


@pytest.fixture
def served(registry: Registry, tmp_path, monkeypatch) -> None:
    """The state file `skyport serve` writes (this process stands in for the server)."""
    write_served_state(registry.settings, tmp_path, monkeypatch)


def test_dry_run_then_real_run_as_json(capsys, registry, app_client, target, storage):
    key, tail = crash_leftovers(registry)
    live, _ = abandon(app_client)
    before = storage.snapshot()

    code, out, _ = run(capsys, "uploads", "expire", "--dry-run", "--json", "--grace-seconds", "0", *target)
    assert code == 0
    dry = json.loads(out)
    assert dry["dry_run"] is True and storage.snapshot() == before
    assert (dry["sessions"], dry["multipart_uploads"], dry["tail_objects"], dry["bytes"]) == (0, 1, 1, 1500)
    assert dry["kept"] == 2  # the live session's multipart upload and tail

    code, out, _ = run(capsys, "uploads", "expire", "--json", "--grace-seconds", "0", *target)
    report = json.loads(out)
    assert code == 0 and report["dry_run"] is False and report["complete"] is True
    assert {(r["kind"], r["name"]) for r in report["removed"]} == {
        ("multipart_upload", key),
        ("tail_object", tail),
    }
    assert [u["Key"].split("/")[1] for u in multipart_uploads(registry)] == [live]
    assert [k.split("/")[1] for k in objects(registry, "uploads/")] == [live]


def test_text_report_on_the_served_registry(capsys, registry, served):
    key, _ = crash_leftovers(registry)
    code, out, _ = run(capsys, "uploads", "expire", "--grace-seconds", "0")
    assert code == 0
    assert f"removed\tmultipart_upload\t{key}\t1000" in out
    assert "removed: 0 expired sessions, 1 multipart uploads, 1 tail objects" in out
    # The default grace period (the upload TTL) spares what is minutes old.
    crash_leftovers(registry)
    code, out, _ = run(capsys, "uploads", "expire", "--dry-run")
    assert code == 0 and "would remove: 0 expired sessions, 0 multipart uploads, 0 tail objects" in out


def test_a_table_without_a_bucket_is_refused(capsys, registry):
    settings = registry.settings
    code, _, err = run(
        capsys,
        "uploads",
        "expire",
        "--table",
        settings.table,
        "--dynamodb-endpoint",
        settings.dynamodb_endpoint,
    )
    assert code == 1 and "--bucket" in err
