"""`skyport webhook add|list|remove|test` on a table (as --table, and as `make run`'s state
file finds it), against real receivers; and what `add` refuses."""

from __future__ import annotations

import json
import os

import pytest
from skyport.registry import Registry
from skyport.storage import keys
from skyport_cli.main import main

from .conftest import REGION, SECRETS_ENDPOINT, readme_verifier

SECRET = "the-ci-receivers-secret-42"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err


@pytest.fixture
def target(hook_registry: Registry, monkeypatch, moto_endpoint) -> list[str]:
    # The commands make their own clients: Secrets Manager on moto, as on a laptop.
    monkeypatch.setenv(SECRETS_ENDPOINT, moto_endpoint)
    settings = hook_registry.settings
    return ["--table", settings.table, "--dynamodb-endpoint", settings.dynamodb_endpoint, "--region", REGION]


def webhook_items(registry: Registry) -> list[dict]:
    response = registry.clients.dynamodb.query(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.WEBHOOK}},
    )
    return response["Items"]


def hook_secrets(registry: Registry) -> list[str]:
    listed = registry.clients.secretsmanager.list_secrets(
        Filters=[{"Key": "name", "Values": [registry.settings.hook_secrets]}]
    )
    return [secret["Name"] for secret in listed["SecretList"]]


@pytest.mark.parametrize(
    "command",
    [["webhook"], ["webhook", "add"], ["webhook", "list"], ["webhook", "remove"], ["webhook", "test"]],
)
def test_every_webhook_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: skyport webhook" in out and len(out.splitlines()) > 3


def test_add_list_test_remove(capsys, monkeypatch, target, hook_registry, receivers):
    receiver = receivers()
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    code, out, err = run(
        capsys,
        "webhook",
        "add",
        receiver.url,
        "--events",
        "tag.*",
        "--events",
        "manifest.pushed",
        "--repositories",
        "team-a/*",
        "--secret-env",
        "HOOK_SECRET",
        *target,
    )
    assert code == 0, err
    webhook_id = out.split()[1]
    assert out.startswith(
        f"webhook {webhook_id} added: POST {receiver.url} for tag.*,manifest.pushed on team-a/*"
    )
    assert SECRET not in out and "$HOOK_SECRET" in out

    code, out, _ = run(capsys, "webhook", "list", *target)
    assert code == 0 and out.split("\t")[0] == webhook_id
    code, out, _ = run(capsys, "webhook", "list", "--json", *target)
    [listed] = json.loads(out)
    assert listed["id"] == webhook_id and listed["url"] == receiver.url
    assert listed["event_types"] == ["tag.*", "manifest.pushed"] and listed["repositories"] == "team-a/*"
    assert listed["insecure"] is False and SECRET not in out

    code, out, err = run(capsys, "webhook", "test", webhook_id, *target)
    assert code == 0 and out.strip() == f"signed ping delivered to {webhook_id}: HTTP 200", err
    [ping] = receiver.requests
    assert readme_verifier()(SECRET, ping.headers["skyport-signature"], ping.body)
    [event] = json.loads(ping.body)["events"]
    assert event["action"] == "ping" and event["skyport"] == {
        "eventType": "webhook.ping",
        "webhookId": webhook_id,
    }
    assert ping.headers["skyport-event-id"] == event["id"]

    receiver.status = 500
    code, out, err = run(capsys, "webhook", "test", webhook_id, *target)
    assert code == 1 and "HTTP 500" in err and SECRET not in err

    assert len(hook_secrets(hook_registry)) == 1
    code, out, _ = run(capsys, "webhook", "remove", webhook_id, *target)
    assert code == 0 and webhook_id in out
    assert webhook_items(hook_registry) == [] and hook_secrets(hook_registry) == []
    code, _, err = run(capsys, "webhook", "remove", webhook_id, *target)
    assert code == 1 and "no webhook" in err
    code, _, err = run(capsys, "webhook", "test", webhook_id, *target)
    assert code == 1 and "no webhook" in err


def test_a_generated_secret_is_shown_once_and_signs(capsys, target, hook_registry, receivers):
    receiver = receivers()
    code, out, _ = run(capsys, "webhook", "add", receiver.url, *target)
    assert code == 0
    webhook_id = out.split()[1]
    secret = out.split("signing secret (shown once; receivers verify Skyport-Signature with it): ")[1].strip()
    assert len(secret) >= 40
    code, out, _ = run(capsys, "webhook", "list", *target)
    assert secret not in out and "every event on *" in out
    assert run(capsys, "webhook", "test", webhook_id, *target)[0] == 0
    assert readme_verifier()(
        secret, receiver.requests[0].headers["skyport-signature"], receiver.requests[0].body
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ftp://hooks.example.com/x"], "http:// or https://"),
        (["file:///etc/passwd"], "http:// or https://"),
        (["gopher://127.0.0.1:6379/_INFO"], "http:// or https://"),
        (["hooks.example.com/skyport"], "http:// or https://"),
        (["https://"], "names no host"),
        (["https://user:pw@hooks.example.com/"], "must not carry credentials"),
        (["https://hooks.example.com/#x"], "fragment"),
        (["http://169.254.169.254/latest/meta-data/"], "link-local"),
        (["http://[fe80::1]/"], "link-local"),
        (["http://2852039166/latest/meta-data/"], "link-local"),  # 169.254.169.254
        (["http://169.254.170.2./v2/credentials"], "link-local"),
        (["http://hooks.example.com:99999/"], "not a URL"),
        (["http://hooks.example.com/a b"], "no spaces"),
        (["http://hooks.exämple.com/"], "ASCII"),
        (["http://hooks.example.com/", "--insecure"], "https:// URLs only"),
        (["https://hooks.example.com/", "--repositories", "Team-A/*"], "invalid repository pattern"),
        (["https://hooks.example.com/", "--repositories", "a//b"], "invalid repository pattern"),
        (["https://hooks.example.com/", "--events", "push"], "unknown event type 'push'"),
        (["https://hooks.example.com/", "--events", "tag.moved,blob.*"], "unknown event type 'blob.*'"),
        (["https://hooks.example.com/", "--secret-env", "SKYPORT_TEST_UNSET_VARIABLE"], "unset or empty"),
        (["https://hooks.example.com/", "--secret-env", "SHORT_SECRET"], "at least 16 characters"),
    ],
)
def test_add_refuses_with_a_clear_message_and_stores_nothing(
    capsys, monkeypatch, target, hook_registry, arguments, message
):
    monkeypatch.delenv("SKYPORT_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("SHORT_SECRET", "too-short")
    code, out, err = run(capsys, "webhook", "add", *arguments, *target)
    assert code == 1 and out == ""
    assert err.startswith("skyport webhook add: ") and message in err, err
    assert "too-short" not in err and "pw@" not in err
    assert webhook_items(hook_registry) == [] and hook_secrets(hook_registry) == []


def test_the_make_run_registry_is_found_with_its_secrets_on_the_same_moto(
    capsys, monkeypatch, tmp_path, hook_registry, receivers
):
    settings = hook_registry.settings
    monkeypatch.setenv("SKYPORT_STATE_DIR", str(tmp_path))
    # As a shell would be: no Secrets Manager endpoint set; the command uses the stack's moto.
    # (setenv then delenv: the variable the command sets is undone after the test.)
    monkeypatch.setenv(SECRETS_ENDPOINT, "unused")
    monkeypatch.delenv(SECRETS_ENDPOINT)
    (tmp_path / "serve.json").write_text(
        json.dumps(
            {
                "address": "127.0.0.1:5000",
                "table": settings.table,
                "bucket": settings.bucket,
                "region": REGION,
                "dynamodb_endpoint": settings.dynamodb_endpoint,
                "s3_endpoint": settings.s3_endpoint,
                "pid": os.getpid(),
            }
        )
    )
    receiver = receivers()
    code, out, err = run(capsys, "webhook", "add", receiver.url)
    assert code == 0, err
    webhook_id = out.split()[1]
    assert [item[keys.SK]["S"] for item in webhook_items(hook_registry)] == [webhook_id]
    assert hook_secrets(hook_registry) == [f"{settings.hook_secrets}webhooks/{webhook_id}"]
    assert run(capsys, "webhook", "test", webhook_id)[0] == 0 and len(receiver.requests) == 1


def test_a_custom_secret_prefix_is_honoured(capsys, monkeypatch, target, hook_registry, receivers):
    prefix = f"team/{hook_registry.settings.table}/"
    monkeypatch.setenv("SKYPORT_HOOK_SECRET_PREFIX", prefix)
    code, out, err = run(capsys, "webhook", "add", receivers().url, *target)
    assert code == 0, err
    webhook_id = out.split()[1]
    listed = hook_registry.clients.secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])
    assert [secret["Name"] for secret in listed["SecretList"]] == [f"{prefix}webhooks/{webhook_id}"]
    assert hook_secrets(hook_registry) == []
    assert run(capsys, "webhook", "remove", webhook_id, *target)[0] == 0
    listed = hook_registry.clients.secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])
    assert listed["SecretList"] == []
