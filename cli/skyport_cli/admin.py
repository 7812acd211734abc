"""Admin commands: `skyport user|robot|grant|revoke|grants|repo`, on the local stack or on AWS.

They write the registry's DynamoDB table directly (the same core code the API
uses), so they need no running API and no token, only access to the table:

- a running `skyport serve` (`make run`): found through the state file it writes
  (``.skyport/serve.json``, or under ``$SKYPORT_STATE_DIR``);
- a deployed stack: ``--stack NAME`` (boto3's default credentials; the table and
  bucket come from the stack's outputs);
- any table: ``--table NAME [--dynamodb-endpoint URL]``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

STATE_FILE = "serve.json"


def state_dir() -> Path:
    return Path(os.environ.get("SKYPORT_STATE_DIR") or ".skyport")


def write_state(values: dict[str, Any]) -> Path:
    """Where `skyport serve` tells the admin commands how to reach its stack."""
    path = state_dir() / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**values, "pid": os.getpid()}))
    return path


def remove_state(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


class TargetError(Exception):
    pass


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


def _stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    import boto3

    client = boto3.session.Session(region_name=region).client("cloudformation")
    described = client.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def human_size(count: int) -> str:
    """Bytes as people read them: 812 B, 3.4 MiB, 1.2 TiB (the reports of gc, usage and
    uploads expire; their --json output keeps the exact count)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def resolve_target(args: argparse.Namespace) -> dict[str, Any]:
    """Settings values (SKYPORT_* names) for the table the command works on."""
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if args.stack:
        outputs = _stack_outputs(args.stack, region)
        if "TableName" not in outputs:
            raise TargetError(f"stack {args.stack} has no TableName output")
        return {
            "SKYPORT_TABLE": outputs["TableName"],
            "SKYPORT_BUCKET": outputs.get("BucketName", "-"),
            "AWS_REGION": region or "us-east-1",
            "where": f"stack {args.stack}",
        }
    if args.table:
        return {
            "SKYPORT_TABLE": args.table,
            "SKYPORT_BUCKET": "-",
            "AWS_REGION": region or "us-east-1",
            "SKYPORT_DYNAMODB_ENDPOINT": args.dynamodb_endpoint or "",
            "where": f"table {args.table}",
        }
    path = state_dir() / STATE_FILE
    try:
        state = json.loads(path.read_text())
        if not _alive(state.get("pid")):
            raise ValueError("the server that wrote it is gone")
    except (OSError, ValueError):
        raise TargetError(
            "no registry to administer: start one with `make run` (or `skyport serve`) in this "
            "directory, or name one with --stack NAME (deployed) or --table NAME "
            "[--dynamodb-endpoint URL]"
        ) from None
    return {
        "SKYPORT_TABLE": state["table"],
        "SKYPORT_BUCKET": state["bucket"],
        "AWS_REGION": state.get("region", "us-east-1"),
        "SKYPORT_DYNAMODB_ENDPOINT": state.get("dynamodb_endpoint") or "",
        "SKYPORT_S3_ENDPOINT": state.get("s3_endpoint") or "",
        "where": f"the local registry on {state.get('address', '?')}",
    }


def target_registry(args: argparse.Namespace):
    """The Registry the command works on (resolve_target): for the admin commands and the
    other command modules (webhooks.py, replication.py)."""
    from skyport.config import Settings
    from skyport.registry import Registry

    target = resolve_target(args)
    if target.get("SKYPORT_DYNAMODB_ENDPOINT"):
        # moto accepts any credentials, but boto3 wants some; never override real ones.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "skyport-local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "skyport-local")
    if target.get("SKYPORT_S3_ENDPOINT") and target["SKYPORT_S3_ENDPOINT"] == target.get(
        "SKYPORT_DYNAMODB_ENDPOINT"
    ):
        # `make run`'s embedded moto is a whole moto: Secrets Manager (hook secrets) too.
        os.environ.setdefault("AWS_ENDPOINT_URL_SECRETS_MANAGER", target["SKYPORT_S3_ENDPOINT"])
    # Hook secrets are named under this prefix; a stack whose functions were given another
    # one (template.yaml) needs the same here.
    prefix = os.environ.get("SKYPORT_HOOK_SECRET_PREFIX")
    settings = {k: v for k, v in target.items() if k != "where"}
    return Registry(
        Settings.from_env({**settings, **({"SKYPORT_HOOK_SECRET_PREFIX": prefix} if prefix else {})})
    )


def bucket_registry(args: argparse.Namespace, needs: str) -> tuple[Any, str]:
    """The Registry of a command that reads or writes the bucket as well as the table (gc,
    the upload sweep, scans), and where it is: resolve_target, with ``--bucket`` and
    ``--s3-endpoint`` on top; TargetError when no bucket is known (``needs`` says who
    needs it: "garbage collection needs the bucket too")."""
    from skyport.config import Settings
    from skyport.registry import Registry

    target = resolve_target(args)
    if args.bucket:
        target["SKYPORT_BUCKET"] = args.bucket
    if args.s3_endpoint:
        target["SKYPORT_S3_ENDPOINT"] = args.s3_endpoint
    if target.get("SKYPORT_BUCKET", "-") in ("", "-"):
        raise TargetError(f"{needs}: --bucket NAME (with --table)")
    if target.get("SKYPORT_DYNAMODB_ENDPOINT") or target.get("SKYPORT_S3_ENDPOINT"):
        # moto accepts any credentials, but boto3 wants some; never override real ones.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "skyport-local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "skyport-local")
    settings = {k: v for k, v in target.items() if k != "where"}
    return Registry(Settings.from_env(settings)), target["where"]


def _identities(args: argparse.Namespace):
    return target_registry(args).identities


def _read_password(args: argparse.Namespace, prompt: str) -> tuple[str, bool]:
    """(password, generated): from stdin, a prompt, or generated and shown once."""
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n"), False
    if getattr(args, "generate", False) or not sys.stdin.isatty():
        return secrets.token_urlsafe(18), True
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise SystemExit("passwords do not match")
    return first, False


# --- commands -------------------------------------------------------------------------


def user_add(args: argparse.Namespace) -> None:
    service = _identities(args)
    password, generated = _read_password(args, f"password for {args.name}: ")
    service.add_user(args.name, password, admin=args.admin, groups=args.group)
    print(f"user {args.name} created" + (" (admin)" if args.admin else ""))
    if generated:
        print(f"password (shown once): {password}")


def user_passwd(args: argparse.Namespace) -> None:
    service = _identities(args)
    password, generated = _read_password(args, f"new password for {args.name}: ")
    service.set_password(args.name, password)
    print(f"password of {args.name} changed; its refresh tokens (docker logins) no longer work")
    if generated:
        print(f"password (shown once): {password}")


def user_set(args: argparse.Namespace) -> None:
    groups = None if args.groups is None else [g for g in args.groups.split(",") if g]
    _identities(args).update(args.name, admin=args.admin, groups=groups)
    print(f"{args.name} updated")


def user_delete(args: argparse.Namespace) -> None:
    _identities(args).delete(args.name)
    print(f"{args.name} deleted, with the grants made to it")


def user_unlock(args: argparse.Namespace) -> None:
    _identities(args).unlock(args.name)
    print(f"{args.name} unlocked")


def identities_list(args: argparse.Namespace, kind: str) -> None:
    rows = [r for r in _identities(args).list_identities() if r.kind == kind]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "admin": r.admin,
                        "groups": list(r.groups),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    for r in rows:
        flags = ["admin"] if r.admin else []
        if r.groups:
            flags.append("groups=" + ",".join(r.groups))
        print(f"{r.name}\t{' '.join(flags)}")


def robot_add(args: argparse.Namespace) -> None:
    identity, secret = _identities(args).add_robot(args.name, groups=args.group)
    print(
        f"robot {identity.name} created\n"
        f"secret (shown once, store it in your CI's secrets): {secret}\n"
        f"  docker login -u '{identity.name}' --password-stdin REGISTRY"
    )


def robot_rotate(args: argparse.Namespace) -> None:
    secret = _identities(args).rotate_robot(args.name)
    print(f"new secret (shown once; the old one no longer works): {secret}")


def robot_revoke(args: argparse.Namespace) -> None:
    name = args.name if args.name.startswith("robot+") else f"robot+{args.name}"
    _identities(args).delete(name)
    print(
        f"{name} revoked: its secret and tokens no longer work (access tokens already issued "
        f"expire within minutes)"
    )


def grant(args: argparse.Namespace) -> None:
    actions = _identities(args).grant(args.pattern, args.to, args.actions.split(","))
    print(f"{args.to} may {','.join(sorted(actions))} on {args.pattern}")


def revoke(args: argparse.Namespace) -> None:
    _identities(args).revoke(args.pattern, getattr(args, "from"))
    print(f"grant on {args.pattern} to {getattr(args, 'from')} removed")


def grants_list(args: argparse.Namespace) -> None:
    for g in _identities(args).list_grants():
        who = "everyone (public)" if g.principal == "*" else g.principal
        print(f"{g.pattern}\t{who}\t{','.join(sorted(g.actions))}")


def repo_public(args: argparse.Namespace) -> None:
    service = _identities(args)
    if args.list:
        for g in service.list_grants():
            if g.principal == "*":
                print(g.pattern)
        return
    if not args.pattern:
        raise SystemExit("name a repository or pattern, or --list")
    service.set_public(args.pattern, not args.off)
    print(f"{args.pattern}: " + ("private again" if args.off else "public (anonymous pull)"))


def repo_private(args: argparse.Namespace) -> None:
    _identities(args).set_public(args.pattern, False)
    print(f"{args.pattern}: private again")


# --- parser ---------------------------------------------------------------------------


def _target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which registry (default: the `make run` one in this directory)")
    group.add_argument("--stack", help="a deployed stack: its TableName output (boto3 default credentials)")
    group.add_argument("--table", help="a DynamoDB table by name")
    group.add_argument("--dynamodb-endpoint", help="with --table: a DynamoDB endpoint (moto, local)")
    group.add_argument("--region", help="AWS region (default: AWS_REGION, the profile's)")


# The --stack/--table/--region options, for the other command modules (webhooks.py,
# replication.py).
target_options = _target_options


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument(
        "--generate",
        action="store_true",
        help="generate a password and show it once (the default without a terminal)",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    # user
    user = commands.add_parser(
        "user",
        help="users: add, list, passwd, set, delete, unlock",
        description="Users log in with a password (docker login).",
    )
    sub = user.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="create a user",
        description="Create a user. The password comes "
        "from a prompt, stdin (--password-stdin), or is generated and shown once.",
    )
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may do everything, on every repository")
    p.add_argument("--group", action="append", default=[], help="a group it belongs to (repeatable)")
    _password_options(p)
    _target_options(p)
    p.set_defaults(run=user_add)
    p = sub.add_parser("list", help="list users", description="List users, their admin flag and groups.")
    p.add_argument("--json", action="store_true")
    _target_options(p)
    p.set_defaults(run=lambda a: identities_list(a, "user"))
    p = sub.add_parser(
        "passwd",
        help="set a user's password",
        description="Set a new password; the user's refresh tokens stop working.",
    )
    p.add_argument("name")
    _password_options(p)
    _target_options(p)
    p.set_defaults(run=user_passwd)
    p = sub.add_parser(
        "set",
        help="change admin flag or groups",
        description="Change a user's or robot's admin flag or groups.",
    )
    p.add_argument("name")
    p.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--groups", help="comma-separated: replaces its groups ('' for none)")
    _target_options(p)
    p.set_defaults(run=user_set)
    p = sub.add_parser(
        "delete",
        help="delete a user",
        description="Delete a user and the grants made to it by name.",
    )
    p.add_argument("name")
    _target_options(p)
    p.set_defaults(run=user_delete)
    p = sub.add_parser(
        "unlock",
        help="end a lockout after failed logins",
        description="Clear the failed-login count and lockout of a user or robot.",
    )
    p.add_argument("name")
    _target_options(p)
    p.set_defaults(run=user_unlock)

    # robot
    robot = commands.add_parser(
        "robot",
        help="robot accounts for CI: add, list, rotate, revoke",
        description="Robot accounts (robot+NAME) log in with a generated secret, shown once.",
    )
    sub = robot.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="create a robot and show its secret once",
        description="Create robot+NAME; its secret is printed once and stored only hashed.",
    )
    p.add_argument("name")
    p.add_argument("--group", action="append", default=[], help="a group it belongs to (repeatable)")
    _target_options(p)
    p.set_defaults(run=robot_add)
    p = sub.add_parser("list", help="list robots", description="List robot accounts.")
    p.add_argument("--json", action="store_true")
    _target_options(p)
    p.set_defaults(run=lambda a: identities_list(a, "robot"))
    p = sub.add_parser(
        "rotate",
        help="new secret (the old one stops working)",
        description="Replace a robot's secret; the new one is printed once.",
    )
    p.add_argument("name")
    _target_options(p)
    p.set_defaults(run=robot_rotate)
    p = sub.add_parser("revoke", help="delete a robot", description="Delete a robot account and its grants.")
    p.add_argument("name")
    _target_options(p)
    p.set_defaults(run=robot_revoke)

    # grant / revoke / grants
    p = commands.add_parser(
        "grant",
        help="give actions on repositories to a user, robot or group",
        description="Give ACTIONS (pull, push, delete or *, comma-separated; push and delete imply "
        "pull) on the repositories matching PATTERN ('team-a/*': everything under "
        "team-a/; '*' matches any characters) to --to: a user, robot+NAME or group:NAME.",
    )
    p.add_argument("pattern")
    p.add_argument("actions")
    p.add_argument("--to", required=True, help="alice, robot+ci or group:team-a")
    _target_options(p)
    p.set_defaults(run=grant)
    p = commands.add_parser(
        "revoke", help="remove a grant", description="Remove the grant on PATTERN to --from."
    )
    p.add_argument("pattern")
    p.add_argument("--from", required=True, help="alice, robot+ci or group:team-a")
    _target_options(p)
    p.set_defaults(run=revoke)
    p = commands.add_parser("grants", help="list grants", description="List every grant.")
    _target_options(p)
    p.set_defaults(run=grants_list)

    # repo
    repo = commands.add_parser(
        "repo", help="repository settings: public, private", description="Repository settings."
    )
    sub = repo.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "public",
        help="allow anonymous pull of repositories",
        description="Let anyone, anonymous callers too, pull the repositories matching "
        "PATTERN (a name or 'team-a/*'); --off or `repo private` undoes it.",
    )
    p.add_argument("pattern", nargs="?")
    p.add_argument("--off", action="store_true", help="make it private again")
    p.add_argument("--list", action="store_true", help="list the public patterns")
    _target_options(p)
    p.set_defaults(run=repo_public)
    p = sub.add_parser("private", help="undo `repo public`", description="Stop anonymous pulls of PATTERN.")
    p.add_argument("pattern")
    _target_options(p)
    p.set_defaults(run=repo_private)


ADMIN_COMMANDS = ("user", "robot", "grant", "revoke", "grants", "repo")


def run(args: argparse.Namespace) -> int:
    from skyport.auth.identities import AuthError
    from skyport.auth.policy import InvalidName

    try:
        args.run(args)
    except (AuthError, InvalidName, TargetError) as error:
        print(f"skyport {args.command}: {error}", file=sys.stderr)
        return 1
    return 0
