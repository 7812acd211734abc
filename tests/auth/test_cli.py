"""`skyport user|robot|grant|revoke|grants|repo`: against a table (as on the local stack or
on AWS), with --help for each."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from skyport.registry import Registry
from skyport_cli import admin
from skyport_cli.main import main

from .conftest import REGION


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err


@pytest.fixture
def target(auth_registry: Registry) -> list[str]:
    settings = auth_registry.settings
    return [
        "--table",
        settings.table,
        "--dynamodb-endpoint",
        settings.dynamodb_endpoint,
        "--region",
        REGION,
    ]


HELP = [
    ["user"],
    ["user", "add"],
    ["user", "list"],
    ["user", "passwd"],
    ["user", "set"],
    ["user", "delete"],
    ["user", "unlock"],
    ["robot"],
    ["robot", "add"],
    ["robot", "list"],
    ["robot", "rotate"],
    ["robot", "revoke"],
    ["grant"],
    ["revoke"],
    ["grants"],
    ["repo"],
    ["repo", "public"],
    ["repo", "private"],
    ["serve"],
]


@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: skyport" in out and len(out.splitlines()) > 3


def test_users_robots_grants_and_public_repositories(capsys, monkeypatch, target, auth_registry):
    auth = auth_registry.auth
    code, out, _ = run(
        capsys,
        "user",
        "add",
        "alice",
        "--group",
        "team-a",
        "--password-stdin",
        *target,
        stdin="alice-password-1\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and "user alice created" in out and "alice-password-1" not in out
    assert auth.authenticate("alice", "alice-password-1").groups == ("team-a",)

    code, out, _ = run(capsys, "user", "add", "root", "--admin", "--generate", *target)
    password = out.split("password (shown once): ")[1].strip()
    assert auth.authenticate("root", password).admin

    code, out, _ = run(capsys, "robot", "add", "ci", *target)
    secret = out.split("secret (shown once, store it in your CI's secrets): ")[1].split()[0]
    assert auth.authenticate("robot+ci", secret).kind == "robot"
    code, out, _ = run(capsys, "robot", "list", "--json", *target)
    assert [r["name"] for r in json.loads(out)] == ["robot+ci"] and secret not in out

    assert run(capsys, "grant", "team-a/*", "push", "--to", "group:team-a", *target)[0] == 0
    assert run(capsys, "grant", "team-a/*", "pull", "--to", "robot+ci", *target)[0] == 0
    code, out, _ = run(capsys, "repo", "public", "pub/*", *target)
    assert code == 0 and "public" in out
    code, out, _ = run(capsys, "grants", *target)
    assert out.splitlines() == [
        "pub/*\teveryone (public)\tpull",
        "team-a/*\tgroup:team-a\tpull,push",
        "team-a/*\trobot+ci\tpull",
    ]
    assert run(capsys, "repo", "public", "--list", *target)[1].split() == ["pub/*"]
    policy = auth.policy(auth.identity("alice"))
    assert policy.actions("team-a/app") == {"pull", "push"} and policy.actions("pub/x") == {"pull"}

    code, out, _ = run(capsys, "robot", "rotate", "ci", *target)
    new_secret = out.split(": ")[-1].strip()
    assert new_secret != secret and auth.authenticate("robot+ci", new_secret)
    assert run(capsys, "revoke", "team-a/*", "--from", "robot+ci", *target)[0] == 0
    assert run(capsys, "repo", "private", "pub/*", *target)[0] == 0
    assert run(capsys, "robot", "revoke", "ci", *target)[0] == 0
    assert auth.identity("robot+ci").anonymous

    code, out, _ = run(
        capsys,
        "user",
        "passwd",
        "alice",
        "--password-stdin",
        *target,
        stdin="alice-password-2\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and auth.authenticate("alice", "alice-password-2")
    assert run(capsys, "user", "set", "alice", "--admin", "--groups", "x,y", *target)[0] == 0
    assert auth.identity("alice").admin and auth.identity("alice").groups == ("x", "y")
    code, out, _ = run(capsys, "user", "list", *target)
    assert out.splitlines() == ["alice\tadmin groups=x,y", "root\tadmin"]
    assert run(capsys, "user", "unlock", "alice", *target)[0] == 0
    assert run(capsys, "user", "delete", "alice", *target)[0] == 0

    # Mistakes are one line on stderr and exit code 1.
    code, _, err = run(capsys, "user", "delete", "nobody", *target)
    assert code == 1 and err.strip() == "skyport user: no such user or robot: nobody"
    code, _, err = run(capsys, "grant", "Bad Pattern", "push", "--to", "x", *target)
    assert code == 1 and "invalid repository pattern" in err


def test_the_local_registry_is_found_through_its_state_file(capsys, tmp_path, monkeypatch, auth_registry):
    monkeypatch.setenv("SKYPORT_STATE_DIR", str(tmp_path))
    code, _, err = run(capsys, "user", "list")
    assert code == 1 and "make run" in err
    settings = auth_registry.settings
    path = admin.write_state(
        {
            "address": "127.0.0.1:5000",
            "table": settings.table,
            "bucket": settings.bucket,
            "region": REGION,
            "dynamodb_endpoint": settings.dynamodb_endpoint,
        }
    )
    auth_registry.identities.add_user("alice", "alice-password-1")
    assert run(capsys, "user", "list")[1].split() == ["alice"]
    admin.remove_state(path)
    assert not path.exists()
    # A server killed before it could remove its file: the file is ignored.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(json.dumps({"table": settings.table, "bucket": "-", "pid": int(gone.stdout)}))
    code, _, err = run(capsys, "user", "list")
    assert code == 1 and "make run" in err


def test_a_deployed_stack_is_found_through_its_outputs(capsys, monkeypatch, auth_registry):
    settings = auth_registry.settings
    asked = []

    def outputs(stack, region):
        asked.append((stack, region))
        return {"TableName": settings.table, "BucketName": settings.bucket}

    monkeypatch.setattr(admin, "_stack_outputs", outputs)
    # On AWS the table is at AWS's endpoint; here the stack's table is on moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", settings.dynamodb_endpoint)
    auth_registry.identities.add_user("alice", "alice-password-1")
    code, out, _ = run(capsys, "user", "list", "--stack", "skyport-prod", "--region", REGION)
    assert code == 0 and out.split() == ["alice"] and asked == [("skyport-prod", REGION)]
