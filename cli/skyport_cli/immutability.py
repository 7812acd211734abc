"""`skyport immutability add|list|remove`: tag immutability rules (skyport/immutability.py).

Like the admin commands (admin.py), they write the registry's table directly and find it
the same way: the `make run` in this directory (``.skyport/serve.json``), ``--stack NAME``
or ``--table NAME [--dynamodb-endpoint URL]``. Running registries read the rules at most
every SKYPORT_IMMUTABILITY_CACHE_SECONDS (30 by default): a change reaches them within that.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import admin

PATTERN_HELP = (
    "repositories whose tags become immutable: a name or a pattern where '*' matches any "
    "characters, '/' included ('team-a/*', '*'), as grants take"
)
EXCLUDE_HELP = (
    "a tag pattern that stays mutable ('latest', 'dev-*'; '*' matches any characters); "
    "repeatable, or comma-separated"
)


def _within(registry) -> str:
    seconds = registry.settings.immutability_cache_seconds
    return f"running registries apply it within {seconds} s (SKYPORT_IMMUTABILITY_CACHE_SECONDS)"


def add(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    rule = registry.immutability.add(args.pattern, args.exclude or ())
    print(f"immutability rule {rule.id} added: {rule.describe()}")
    print(_within(registry))


def list_(args: argparse.Namespace) -> None:
    rules = admin.target_registry(args).immutability.list_rules()
    if args.json:
        print(json.dumps([rule.fields() for rule in rules], indent=2))
        return
    for rule in rules:
        print(f"{rule.id}\t{rule.repositories}\texcept: {','.join(rule.exclude) or '-'}")


def remove(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    rule = registry.immutability.remove(args.id)
    print(f"immutability rule {rule.id} removed ({rule.describe()}); {_within(registry)}")


def add_command(commands: argparse._SubParsersAction) -> None:
    immutability = commands.add_parser(
        "immutability",
        help="tag immutability rules: add, list, remove",
        description="Immutable tags: once pushed, a tag a rule covers names one manifest for good. "
        "Pushing it again with the same digest is accepted; moving it, deleting it, or deleting "
        "the manifest it names is refused (DENIED). README, Tag immutability.",
    )
    sub = immutability.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="make the tags of matching repositories immutable",
        description="Make the tags of the repositories matching PATTERN immutable, except those "
        "matching an --exclude pattern.",
    )
    p.add_argument("pattern", help=PATTERN_HELP)
    p.add_argument("--exclude", action="append", metavar="TAGPATTERN", help=EXCLUDE_HELP)
    admin.target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list the rules", description="List the immutability rules.")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=list_)
    p = sub.add_parser("remove", help="remove a rule", description="Remove an immutability rule by its id.")
    p.add_argument("id", help="the rule's id (im-0123abcd), as `list` shows it")
    admin.target_options(p)
    p.set_defaults(run=remove)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.immutability import InvalidRule, RuleNotFound
    from skyport.storage.ports import StorageUnavailable

    try:
        args.run(args)
    except (InvalidRule, RuleNotFound, admin.TargetError) as error:
        print(f"skyport immutability {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport immutability {args.action}: AWS: {error}", file=sys.stderr)
        return 1
    return 0
