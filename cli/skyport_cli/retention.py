"""`skyport retention add|list|remove|preview|run`: retention rules (skyport/retention.py).

Like the admin commands (admin.py), they work on the registry's table directly and find
it the same way: the `make run` in this directory (``.skyport/serve.json``), ``--stack
NAME`` or ``--table NAME [--dynamodb-endpoint URL]``. ``preview`` is the dry run: what
would go and why, what stays and why; it changes nothing. ``run`` applies the rules
(``--dry-run``: the same as preview); deployed, RetentionFunction runs them daily.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime

from . import admin

PATTERN_HELP = (
    "repositories the rule covers: a name or a pattern where '*' matches any characters, "
    "'/' included ('team-a/*', '*'), as grants take"
)
PERIOD_HELP = "a number and a unit: h (hours), d (days) or w (weeks), such as 30d"
AS_OF_HELP = (
    "evaluate as if it were this time: an ISO 8601 time (2027-01-31T00:00:00Z) or now plus a "
    "period (+30d): what a later run would do"
)
_RELATIVE = re.compile(r"\+([0-9]{1,6}[hdw])")


class UsageError(ValueError):
    pass


def parse_as_of(value: str | None) -> int | None:
    """Epoch milliseconds of ``--as-of``; None when not given."""
    from skyport.retention import InvalidRule, parse_period

    if value is None:
        return None
    relative = _RELATIVE.fullmatch(value) if value.isascii() else None
    if relative:
        try:
            return int(time.time() * 1000) + parse_period(relative.group(1), "--as-of") * 1000
        except InvalidRule as error:
            raise UsageError(str(error)) from None
    try:
        if not value.isascii():
            raise ValueError
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--as-of must be an ISO 8601 time (2027-01-31T00:00:00Z) or +PERIOD (+30d), not {value[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def add(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    rule = registry.retention.add(
        args.pattern,
        keep_last=args.keep_last,
        keep_pushed_within=args.keep_pushed_within,
        keep_pulled_within=args.keep_pulled_within,
        keep_tags=args.keep_tags or (),
        untagged_after=args.untagged_after,
    )
    print(f"retention rule {rule.id} added: {rule.describe()}")
    print("nothing is deleted until a run: `skyport retention preview` shows what would go")


def list_(args: argparse.Namespace) -> None:
    rules = admin.target_registry(args).retention.list_rules()
    if args.json:
        print(json.dumps([rule.fields() for rule in rules], indent=2))
        return
    for rule in rules:
        print(f"{rule.id}\t{rule.describe()}")


def remove(args: argparse.Namespace) -> None:
    rule = admin.target_registry(args).retention.remove(args.id)
    print(f"retention rule {rule.id} removed ({rule.describe()})")


def _print_report(report, show_kept: bool = True) -> None:
    print(f"as of {_when(report.as_of_ms)}{' (dry run: nothing changed)' if report.dry_run else ''}")
    for plan in report.repositories:
        print(f"{plan.repository} (rules {', '.join(plan.rules)})")
        for decision in plan.decisions:
            if not decision.delete and not show_kept:
                continue
            verb = "delete" if decision.delete else "keep"
            tags = ", ".join(decision.tags) or "untagged"
            print(
                f"  {verb:6} {decision.digest} [{tags}] pushed {_when(decision.pushed_ms)}, "
                f"pulled {_when(decision.last_pulled_ms)}"
            )
            for reason in decision.reasons:
                print(f"           {reason}")
            if decision.outcome:
                print(f"           -> {decision.outcome}")
    totals = report.totals()
    summary = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in totals.items())
    print(f"total: {summary}")


def preview(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    report = registry.retention.run(dry_run=True, pattern=args.pattern, as_of_ms=parse_as_of(args.as_of))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)


def run_(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    report = registry.retention.run(
        dry_run=args.dry_run, pattern=args.pattern, as_of_ms=parse_as_of(args.as_of)
    )
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    if report.totals()["failed"]:
        raise RunFailed(f"{report.totals()['failed']} deletes failed (see above); run again")


class RunFailed(Exception):
    pass


def add_command(commands: argparse._SubParsersAction) -> None:
    retention = commands.add_parser(
        "retention",
        help="retention rules: add, list, remove, preview, run",
        description="Retention rules say what to keep of each repository; a run deletes the rest "
        "(as manifest deletes: events fire; blobs are left to garbage collection). A manifest is "
        "kept if any keep condition of any rule covering its repository keeps it. README, Retention.",
    )
    sub = retention.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="add a rule",
        description="Add a retention rule for the repositories matching PATTERN. A rule with a keep "
        "condition deletes, in those repositories, what none of its conditions keeps; a rule with "
        "only --untagged-after touches untagged manifests only.",
    )
    p.add_argument("pattern", help=PATTERN_HELP)
    p.add_argument(
        "--keep-last", metavar="N", help="keep the newest N tagged images (by push time), 1 to 10000"
    )
    p.add_argument(
        "--keep-pushed-within", metavar="PERIOD", help=f"keep what was pushed within: {PERIOD_HELP}"
    )
    p.add_argument(
        "--keep-pulled-within",
        metavar="PERIOD",
        help=f"keep what was pulled (GET of its manifest) within: {PERIOD_HELP}",
    )
    p.add_argument(
        "--keep-tags",
        metavar="TAGPATTERN",
        nargs="+",
        action="extend",
        help="keep what a tag matching one of these names ('v*', 'release-*'); comma-separated too",
    )
    p.add_argument(
        "--untagged-after",
        metavar="PERIOD",
        help=f"untagged manifests go this long after their push: {PERIOD_HELP}",
    )
    admin.target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list the rules", description="List the retention rules.")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=list_)
    p = sub.add_parser("remove", help="remove a rule", description="Remove a retention rule by its id.")
    p.add_argument("id", help="the rule's id (rt-0123abcd), as `list` shows it")
    admin.target_options(p)
    p.set_defaults(run=remove)
    p = sub.add_parser(
        "preview",
        help="what a run would delete and keep, and why (changes nothing)",
        description="The dry run: per repository, what a run would delete and why, and what it keeps "
        "and why. Nothing changes.",
    )
    p.add_argument("pattern", nargs="?", help="only repositories matching this pattern")
    p.add_argument("--as-of", metavar="TIME", help=AS_OF_HELP)
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=preview)
    p = sub.add_parser(
        "run",
        help="apply the rules now",
        description="Apply the rules: delete what preview shows, each delete only if no push named "
        "the manifest since the evaluation.",
    )
    p.add_argument("pattern", nargs="?", help="only repositories matching this pattern")
    p.add_argument("--dry-run", action="store_true", help="evaluate only, as preview")
    p.add_argument("--as-of", metavar="TIME", help=AS_OF_HELP + "; a later time also shortens the 1h grace")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=run_)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.retention import InvalidRule, RuleNotFound
    from skyport.storage.ports import StorageUnavailable

    try:
        args.run(args)
    except (InvalidRule, RuleNotFound, UsageError, RunFailed, admin.TargetError) as error:
        print(f"skyport retention {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport retention {args.action}: AWS: {error}", file=sys.stderr)
        return 1
    return 0
