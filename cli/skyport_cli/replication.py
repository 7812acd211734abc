"""`skyport replication add|list|remove|status`: replication rules, on the `make run`
registry (``.skyport/serve.json``) or a deployed stack (``--stack``), like the admin
commands (admin.py: the same options and the same way of finding the table).

The destination's password comes from the environment variable --password-env names,
goes to Secrets Manager (``settings.hook_secrets + "replication/<rule id>"``), and is
never stored in the table nor printed. Patterns and destination URLs:
skyport/replication/rules.py and destinations.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from .admin import TargetError, target_options, target_registry


def _rules(args: argparse.Namespace):
    from skyport.replication.admin import ReplicationRules

    return ReplicationRules(target_registry(args))


def _when(epoch: int) -> str:
    if not epoch:
        return "never"
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{moment} ({int(time.time()) - epoch}s ago)"


def add(args: argparse.Namespace) -> None:
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise SystemExit(
                f"skyport replication add: --password-env {args.password_env}: that variable is not set"
            )
    elif args.username:
        raise SystemExit(
            "skyport replication add: --username needs --password-env VAR (the password's variable)"
        )
    rule = _rules(args).add(
        args.pattern,
        args.to,
        tags=args.tags,
        deletes=args.deletes,
        insecure=args.insecure,
        username=args.username,
        password=password,
    )
    print(
        f"rule {rule.id}: {rule.repositories}"
        + (f" (tags {rule.tags})" if rule.tags else "")
        + f" -> {rule.destination}; deletes {'on' if rule.deletes else 'off'}"
        + ("; insecure" if rule.insecure else "")
        + ("; credentials in Secrets Manager" if rule.credentials else "")
    )


def _rule_json(rule) -> dict:
    return {
        "id": rule.id,
        "repositories": rule.repositories,
        "tags": rule.tags,
        "destination": rule.destination,
        "deletes": rule.deletes,
        "insecure": rule.insecure,
        "credentials": rule.credentials,
    }


def list_rules(args: argparse.Namespace) -> None:
    pairs = _rules(args).list()
    if args.json:
        print(json.dumps([_rule_json(rule) for rule, _ in pairs], indent=2))
        return
    if not pairs:
        print("no replication rules (skyport replication add PATTERN --to URL)")
    for rule, _ in pairs:
        flags = [f"tags={rule.tags}"] if rule.tags else []
        flags += ["deletes"] if rule.deletes else []
        flags += ["insecure"] if rule.insecure else []
        flags += ["credentials"] if rule.credentials else []
        print(f"{rule.id}\t{rule.repositories}\t{rule.destination}\t{' '.join(flags)}")


def remove(args: argparse.Namespace) -> None:
    rule = _rules(args).remove(args.id)
    print(f"rule {rule.id} removed ({rule.repositories} -> {rule.destination})")


def status(args: argparse.Namespace) -> None:
    pairs = _rules(args).list()
    if args.json:
        rows = [
            {
                **_rule_json(rule),
                "lastSuccessAt": state.last_success_at or None,
                "lastErrorAt": state.last_error_at or None,
                "lastError": state.last_error or None,
                "lagSeconds": state.lag_seconds,
                "applied": state.applied,
            }
            for rule, state in pairs
        ]
        print(json.dumps(rows, indent=2))
        return
    if not pairs:
        print("no replication rules")
    for rule, state in pairs:
        lag = "-" if state.lag_seconds is None else f"{state.lag_seconds:.1f}s"
        print(f"{rule.id}  {rule.repositories} -> {rule.destination}")
        print(f"  last success: {_when(state.last_success_at)}; lag {lag}; {state.applied} events applied")
        if state.last_error_at:
            failing = " (failing)" if state.last_error_at >= state.last_success_at else ""
            print(f"  last error:   {_when(state.last_error_at)}{failing}: {state.last_error}")


def add_command(commands: argparse._SubParsersAction) -> None:
    replication = commands.add_parser(
        "replication",
        help="replication rules: add, list, remove, status",
        description="Replicate repositories to another registry: any OCI registry "
        "(http(s)://host[/prefix]) or another Skyport (skyport://BUCKET/TABLE?region=R[&endpoint=URL][&role=ARN]).",
    )
    sub = replication.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="add a rule",
        description="Replicate the repositories matching PATTERN ('*' any characters, '/' included: "
        "'team/*'; '?' one character) to --to. The destination is probed first (GET /v2/).",
    )
    p.add_argument("pattern")
    p.add_argument(
        "--to", required=True, help="http(s)://host[:port][/prefix] or skyport://BUCKET/TABLE?region=R"
    )
    p.add_argument("--tags", help="only tags matching this pattern ('v*'), and the manifests they name")
    p.add_argument("--deletes", action="store_true", help="replicate tag and manifest deletions too")
    p.add_argument("--username", help="the destination's user (with --password-env)")
    p.add_argument("--password-env", help="the environment variable holding the destination's password")
    p.add_argument(
        "--insecure", action="store_true", help="plain http, or https without verifying the certificate"
    )
    target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list rules", description="List replication rules.")
    p.add_argument("--json", action="store_true")
    target_options(p)
    p.set_defaults(run=list_rules)
    p = sub.add_parser(
        "remove", help="remove a rule", description="Remove a rule and its credentials' secret."
    )
    p.add_argument("id")
    target_options(p)
    p.set_defaults(run=remove)
    p = sub.add_parser(
        "status",
        help="lag and last error per rule",
        description="Each rule's last success, lag and last error.",
    )
    p.add_argument("--json", action="store_true")
    target_options(p)
    p.set_defaults(run=status)


def run(args: argparse.Namespace) -> int:
    from skyport.replication.admin import RuleUnknown
    from skyport.replication.rules import RuleInvalid

    try:
        args.run(args)
    except (RuleInvalid, RuleUnknown, TargetError) as error:
        print(f"skyport replication {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
