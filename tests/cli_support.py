"""Running `skyport` commands in-process for tests: the exit code and what they printed,
the flags that point a command at a test's table (and bucket), and the state file
`skyport serve` writes (the test process stands in for the server)."""

from __future__ import annotations

import pytest
from skyport.config import Settings
from skyport_cli.admin import write_state
from skyport_cli.main import main

REGION = "us-east-1"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # not the command's: what ran before it printed
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err


def table_flags(settings: Settings, with_bucket: bool = False) -> list[str]:
    flags = ["--table", settings.table, "--dynamodb-endpoint", settings.dynamodb_endpoint or ""]
    if with_bucket:
        flags += ["--bucket", settings.bucket, "--s3-endpoint", settings.s3_endpoint or ""]
    return [*flags, "--region", REGION]


def write_served_state(settings: Settings, tmp_path, monkeypatch) -> None:
    """The state file `skyport serve` writes for a registry on these settings."""
    monkeypatch.setenv("SKYPORT_STATE_DIR", str(tmp_path / "state"))
    write_state(
        {
            "table": settings.table,
            "bucket": settings.bucket,
            "region": REGION,
            "dynamodb_endpoint": settings.dynamodb_endpoint,
            "s3_endpoint": settings.s3_endpoint,
            "address": "127.0.0.1:0",
        }
    )
