"""`skyport immutability add|list|remove` on a served registry's table (found as `make
run`'s state file finds it, and by --table), enforced by the registry serving that table;
and what `add` and `remove` refuse, with a clear message and nothing stored."""

from __future__ import annotations

import json

import pytest
from cli_support import run_cli as run
from cli_support import table_flags, write_served_state
from oci import assert_error, make_image, push_image
from skyport.registry import Registry
from skyport.storage import keys

from .conftest import push_blobs, put


@pytest.fixture
def target(registry: Registry) -> list[str]:
    return table_flags(registry.settings)


@pytest.fixture
def served(registry: Registry, tmp_path, monkeypatch) -> None:
    """The state file `skyport serve` writes (this process stands in for the server)."""
    write_served_state(registry.settings, tmp_path, monkeypatch)


def rule_items(registry: Registry) -> list[dict]:
    return registry.clients.dynamodb.query(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.IMMUTABILITY}},
    )["Items"]


@pytest.mark.parametrize(
    "command",
    [["immutability"], ["immutability", "add"], ["immutability", "list"], ["immutability", "remove"]],
)
def test_every_immutability_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: skyport immutability" in out and len(out.splitlines()) > 3


def test_add_list_remove_on_the_served_registry(capsys, served, client):
    code, out, err = run(
        capsys, "immutability", "add", "team/*", "--exclude", "latest", "--exclude", "dev-*,rc-*"
    )
    assert code == 0, err
    rule_id = out.split()[2]
    assert out.startswith(
        f"immutability rule {rule_id} added: tags of team/* are immutable, except tags latest, dev-*, rc-*\n"
    )
    assert "within 30 s" in out

    code, out, err = run(capsys, "immutability", "list")
    assert (code, out, err) == (0, f"{rule_id}\tteam/*\texcept: latest,dev-*,rc-*\n", "")
    code, out, _ = run(capsys, "immutability", "list", "--json")
    listed = json.loads(out)
    assert [{k: v for k, v in rule.items() if k != "created_ms"} for rule in listed] == [
        {"id": rule_id, "repositories": "team/*", "exclude": ["latest", "dev-*", "rc-*"]}
    ]

    # The registry serving the table enforces it (its first push reads the rules).
    first, second = make_image(), make_image()
    push_image(client, "team/app", first, "v1")
    push_blobs(client, "team/app", second)
    error = assert_error(put(client, "team/app", "v1", second), 403, "DENIED")
    assert error["detail"]["rule"] == {
        "id": rule_id,
        "repositories": "team/*",
        "exclude": ["latest", "dev-*", "rc-*"],
    }
    push_image(client, "team/app", first, "dev-3")
    assert put(client, "team/app", "dev-3", second).status_code == 201

    code, out, err = run(capsys, "immutability", "remove", rule_id)
    assert code == 0, err
    assert out.startswith(f"immutability rule {rule_id} removed (tags of team/* are immutable, except")
    assert run(capsys, "immutability", "list") == (0, "", "")
    code, _, err = run(capsys, "immutability", "remove", rule_id)
    assert code == 1 and f"no rule {rule_id}" in err


def test_table_option(capsys, target, registry):
    code, out, err = run(capsys, "immutability", "add", "*", *target)
    assert code == 0, err
    assert [item["repositories"]["S"] for item in rule_items(registry)] == ["*"]
    assert "tags of * are immutable\n" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Team/*"], "invalid repository pattern"),  # repository names are lower-case
        (["team/app\u0661"], "invalid repository pattern"),  # an ARABIC-INDIC DIGIT ONE
        (["team/\uff41pp"], "invalid repository pattern"),  # a FULLWIDTH a
        (["team/**"], "invalid repository pattern"),
        (["team//app"], "invalid repository pattern"),
        ([""], "invalid repository pattern"),
        (["a" * 256], "invalid repository pattern"),
        (["team/*", "--exclude", "v\u0661"], "invalid tag pattern"),
        (["team/*", "--exclude", "dev/*"], "invalid tag pattern"),
        (["team/*", "--exclude", ".hidden"], "invalid tag pattern"),
        (["team/*", "--exclude=-x"], "invalid tag pattern"),
        (["team/*", "--exclude", "a b"], "invalid tag pattern"),
        (["team/*", "--exclude", "**"], "invalid tag pattern"),
        (["team/*", "--exclude", "t" * 129], "invalid tag pattern"),
        (["team/*", "--exclude", ",".join(f"t{i}" for i in range(21))], "at most 20 tag exclusions"),
    ],
)
def test_add_refuses_bad_patterns_clearly_and_stores_nothing(capsys, target, registry, argv, message):
    code, out, err = run(capsys, "immutability", "add", *argv[:1], *target, *argv[1:])
    assert code == 1 and out == ""
    assert err.startswith("skyport immutability add: ") and message in err, err
    assert "Traceback" not in err and len(err) < 600
    assert rule_items(registry) == []


def test_add_refuses_an_identical_rule(capsys, target, registry):
    assert run(capsys, "immutability", "add", "team/*", "--exclude", "latest,dev-*", *target)[0] == 0
    code, _, err = run(
        capsys, "immutability", "add", "team/*", "--exclude", "dev-*", "--exclude", "latest", *target
    )
    assert code == 1 and "is the same" in err
    assert run(capsys, "immutability", "add", "team/*", *target)[0] == 0  # other exclusions: another rule
    assert len(rule_items(registry)) == 2


@pytest.mark.parametrize(
    "rule_id", ["im-00000000", "nope", "IM-0123ABCD", "im-0123abcd#x", "x" * 5000, "im-\u0661" * 3]
)
def test_remove_refuses_unknown_ids(capsys, target, rule_id):
    code, out, err = run(capsys, "immutability", "remove", rule_id, *target)
    assert code == 1 and out == "" and "no rule" in err and "Traceback" not in err
    assert len(err) < 300


def test_no_registry_to_administer(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYPORT_STATE_DIR", str(tmp_path / "nothing"))
    code, _, err = run(capsys, "immutability", "list")
    assert code == 1 and "no registry to administer" in err
