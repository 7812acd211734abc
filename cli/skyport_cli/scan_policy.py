"""`skyport scan-policy add|list|remove`: refuse to serve vulnerable images
(skyport/scan_policy.py says what is refused, and why).

Like the admin commands (admin.py), they write the registry's table directly and find it
the same way: the `make run` in this directory (``.skyport/serve.json``), ``--stack NAME``
or ``--table NAME [--dynamodb-endpoint URL]``. Running registries read the policies at
most every SKYPORT_SCAN_POLICY_CACHE_SECONDS (30 by default): a change reaches them within that.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import admin

PATTERN_HELP = (
    "repositories the policy covers: a name or a pattern where '*' matches any characters, "
    "'/' included ('team-a/*', '*'), as grants take; one policy per pattern"
)


def _within(registry) -> str:
    seconds = registry.settings.scan_policy_cache_seconds
    return f"running registries apply it within {seconds} s (SKYPORT_SCAN_POLICY_CACHE_SECONDS)"


def add(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    policy = registry.scan_policies.add(
        args.pattern, args.severity, args.allow or (), require_scan=args.require_scan, replace=args.replace
    )
    print(f"scan policy {'replaced' if args.replace else 'added'}: {policy.describe()}")
    print(_within(registry))


def list_(args: argparse.Namespace) -> None:
    policies = admin.target_registry(args).scan_policies.list_policies()
    if args.json:
        print(json.dumps([policy.fields() for policy in policies], indent=2))
        return
    for policy in policies:
        allowed = ",".join(policy.allow) or "-"
        unscanned = "refused" if policy.require_scan else "served"
        print(f"{policy.repositories}\t{policy.severity}\tallow: {allowed}\tunscanned: {unscanned}")


def remove(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    policy = registry.scan_policies.remove(args.pattern)
    print(f"scan policy for {policy.repositories} removed ({policy.describe()}); {_within(registry)}")


def add_command(commands: argparse._SubParsersAction) -> None:
    scan_policy = commands.add_parser(
        "scan-policy",
        help="scan policies: refuse to serve vulnerable images (add, list, remove)",
        description="A scan policy refuses a manifest GET or HEAD (DENIED) of an image of a covered "
        "repository whose vulnerability report has findings at or above a severity, not counting "
        "allowed ids. Indexes and artifacts are served; each platform image is checked. "
        "docs/scanning.md, Using it.",
    )
    sub = scan_policy.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="refuse images of matching repositories with findings at or above a severity",
        description="Refuse to serve images of the repositories matching PATTERN whose report has "
        "findings at or above --severity, except the --allow ids. An image not scanned yet is "
        "served, unless --require-scan.",
    )
    p.add_argument("pattern", help=PATTERN_HELP)
    p.add_argument("--severity", required=True, help="LOW, MEDIUM, HIGH or CRITICAL")
    p.add_argument(
        "--allow",
        action="append",
        nargs="+",
        metavar="ID",
        help="vulnerability ids (OSV ids or aliases: CVE-2021-44228, GHSA-...) that do not count; "
        "repeatable, or comma-separated",
    )
    p.add_argument(
        "--require-scan",
        action="store_true",
        help="refuse images not scanned yet too (default: served, as ECR serves them)",
    )
    p.add_argument("--replace", action="store_true", help="replace the policy PATTERN has")
    admin.target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list the policies", description="List the scan policies.")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=list_)
    p = sub.add_parser("remove", help="remove a policy", description="Remove the scan policy of PATTERN.")
    p.add_argument("pattern", help="the policy's pattern, as `list` shows it")
    admin.target_options(p)
    p.set_defaults(run=remove)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.scan_policy import InvalidPolicy, PolicyNotFound
    from skyport.storage.ports import StorageUnavailable

    if getattr(args, "allow", None):
        # --allow A B --allow C: argparse gives lists of lists.
        args.allow = [identifier for group in args.allow for identifier in group]
    try:
        args.run(args)
    except (InvalidPolicy, PolicyNotFound, admin.TargetError) as error:
        print(f"skyport scan-policy {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport scan-policy {args.action}: AWS: {error}", file=sys.stderr)
        return 1
    return 0
