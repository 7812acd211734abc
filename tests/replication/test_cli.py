"""`skyport replication add|list|remove|status` as users run it (a subprocess), against the
registry a `make run` state file names (.skyport/serve.json, here under SKYPORT_STATE_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from direct.running import free_port
from harness import StorageView
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.replication import ReplicationFailed

from .conftest import replicate_all

PASSWORD = "s3cret-Pa55-do-not-print"


@pytest.fixture
def cli(registry: Registry, tmp_path: Path, moto_endpoint: str):
    state = tmp_path / "state"
    state.mkdir()
    settings = registry.settings
    (state / "serve.json").write_text(
        json.dumps(
            {
                "address": "127.0.0.1:0",
                "table": settings.table,
                "bucket": settings.bucket,
                "region": settings.region,
                "dynamodb_endpoint": moto_endpoint,
                "s3_endpoint": moto_endpoint,
                "pid": os.getpid(),  # `skyport serve` writes its own; this process is alive
            }
        )
    )

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {
            **os.environ,
            "SKYPORT_STATE_DIR": str(state),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            **env,
        }
        environment.pop("AWS_ENDPOINT_URL_SECRETS_MANAGER", None)  # found from the state file
        return subprocess.run(
            [sys.executable, "-m", "skyport_cli", "replication", *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
        )

    return run


def test_add_list_status_remove(cli, registry, served_destination, source_client, feed, replicator):
    added = cli(
        "add",
        "team/*",
        "--to",
        served_destination.url,
        "--tags",
        "v*",
        "--deletes",
        "--username",
        "robot",
        "--password-env",
        "DEST_PASSWORD",
        DEST_PASSWORD=PASSWORD,
    )
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.split()[1].rstrip(":")
    assert f"rule {rule_id}: team/* (tags v*) -> {served_destination.url}; deletes on" in added.stdout

    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "id": rule_id,
            "repositories": "team/*",
            "tags": "v*",
            "destination": served_destination.url,
            "deletes": True,
            "insecure": False,
            "credentials": True,
        }
    ]
    secret_name = f"{registry.settings.hook_secrets}replication/{rule_id}"
    secret = registry.clients.secretsmanager.get_secret_value(SecretId=secret_name)["SecretString"]
    assert json.loads(secret) == {"username": "robot", "password": PASSWORD}
    table = json.dumps(StorageView(registry).snapshot()["items"], default=str)
    assert PASSWORD not in table and PASSWORD not in added.stdout + added.stderr + listed.stdout

    # The destination (auth off) takes the Basic credentials it never asks for: replicated.
    push_image(source_client, "team/app", make_image(), "v1")
    replicate_all(replicator, feed.new())
    shown = cli("status")
    assert shown.returncode == 0, shown.stderr
    assert (
        rule_id in shown.stdout and "last success: 20" in shown.stdout and "1 events applied" in shown.stdout
    )
    assert "last error" not in shown.stdout

    removed = cli("remove", rule_id)
    assert removed.returncode == 0, removed.stderr
    assert cli("list", "--json").stdout.strip() == "[]"
    with pytest.raises(registry.clients.secretsmanager.exceptions.ResourceNotFoundException):
        registry.clients.secretsmanager.get_secret_value(SecretId=secret_name)
    again = cli("remove", rule_id)
    assert again.returncode == 1 and f"no replication rule {rule_id}" in again.stderr


def test_status_shows_the_last_error(cli, rules, served_destination, source_client, feed, replicator):
    port = free_port()  # nothing listens there
    added = cli("add", "*", "--to", served_destination.url)
    assert added.returncode == 0, added.stderr
    # A rule whose destination went away after it was added: stored without a probe.
    rules.add("*", f"http://127.0.0.1:{port}", probe=False)
    push_image(source_client, "app", make_image(), "1")
    with pytest.raises(ReplicationFailed):
        replicate_all(replicator, feed.new())
    shown = cli("status", "--json")
    rows = {row["destination"]: row for row in json.loads(shown.stdout)}
    assert (
        rows[served_destination.url]["lastError"] is None and rows[served_destination.url]["lagSeconds"] >= 0
    )
    failing = rows[f"http://127.0.0.1:{port}"]
    assert failing["lastSuccessAt"] is None
    assert f"127.0.0.1:{port} unreachable" in failing["lastError"]
    assert "(failing)" in cli("status").stdout


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("Team/*", "bad repository pattern 'Team/*'"),
        ("team//app", "an empty path component"),
        ("team/[ab]", "bad repository pattern"),
        ("", "1 to 255 characters"),
    ],
)
def test_a_bad_pattern_is_refused_with_the_reason(cli, registry, served_destination, pattern, message):
    before = StorageView(registry).snapshot()
    refused = cli("add", pattern, "--to", served_destination.url)
    assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    assert StorageView(registry).snapshot() == before


def test_a_bad_tag_pattern_or_url_is_refused(cli, served_destination):
    refused = cli("add", "team/*", "--to", served_destination.url, "--tags", "v1/x")
    assert refused.returncode == 1 and "bad tag pattern" in refused.stderr
    refused = cli("add", "team/*", "--to", "ftp://example.net")
    assert refused.returncode == 1 and "unknown destination" in refused.stderr
    with_secret = served_destination.url.replace("http://", "http://user:pw@")
    refused = cli("add", "team/*", "--to", with_secret)
    assert refused.returncode == 1 and "must not carry credentials" in refused.stderr
    assert "pw" not in refused.stderr.replace("--password-env", "")
    refused = cli("add", "team/*", "--to", "http://registry.example.net")
    assert refused.returncode == 1 and "in clear: add --insecure" in refused.stderr
    refused = cli("add", "team/*", "--to", "skyport://bucket-x/table-x")
    assert refused.returncode == 1 and "region=R is required" in refused.stderr


def test_an_unreachable_url_is_refused(cli, registry):
    before = StorageView(registry).snapshot()
    port = free_port()
    refused = cli("add", "team/*", "--to", f"http://127.0.0.1:{port}")
    assert refused.returncode == 1, refused.stdout
    assert f"the destination is unreachable: 127.0.0.1:{port} unreachable" in refused.stderr
    refused = cli(
        "add",
        "team/*",
        "--to",
        "skyport://no-such-bucket/no-such-table?region=us-east-1&endpoint=" + registry.settings.s3_endpoint,
    )
    assert refused.returncode == 1 and "the destination is unreachable" in refused.stderr
    assert "ResourceNotFoundException" in refused.stderr
    assert StorageView(registry).snapshot() == before


def test_username_without_password_env_is_refused(cli, served_destination):
    refused = cli("add", "team/*", "--to", served_destination.url, "--username", "u")
    assert refused.returncode != 0 and "--password-env" in refused.stderr
    refused = cli(
        "add", "team/*", "--to", served_destination.url, "--username", "u", "--password-env", "UNSET_VAR_X"
    )
    assert refused.returncode != 0 and "UNSET_VAR_X: that variable is not set" in refused.stderr
