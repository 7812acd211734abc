"""`skyport usage [PATTERN] [--json]`: stored bytes, manifests, tags, last push and last
pull per repository, and the total where a blob shared by several repositories counts
once (skyport/usage.py says what counts and what it costs).

PATTERN takes the grants' syntax ('team-a/*', '*'; default: every repository). The
registry is found as the admin commands find it (admin.py): the `make run` in this
directory, ``--stack NAME`` or ``--table NAME [--dynamodb-endpoint URL]``. Repositories
are read one at a time and printed as they are measured, even as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from . import admin


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(name: str, usage) -> str:
    return "\t".join(
        [
            name,
            admin.human_size(usage.stored_bytes),
            str(usage.stored_bytes),
            str(usage.manifests),
            str(usage.tags),
            _when(usage.last_push_ms),
            _when(usage.last_pull_ms),
        ]
    )


def report(args: argparse.Namespace) -> None:
    from skyport.auth.policy import validate_pattern
    from skyport.usage import UsageTotal

    pattern = validate_pattern(args.pattern) if args.pattern else None
    service = admin.target_registry(args).usage
    total = UsageTotal()
    out = sys.stdout
    if args.json:
        out.write('{"repositories": [')
        for index, usage in enumerate(service.repositories(pattern, total)):
            out.write(("," if index else "") + "\n  " + json.dumps(usage.fields()))
        out.write('\n], "total": ' + json.dumps(total.fields()) + "}\n")
        return
    print("REPOSITORY\tSTORED\tBYTES\tMANIFESTS\tTAGS\tLAST PUSH\tLAST PULL")
    for usage in service.repositories(pattern, total):
        print(_row(usage.name, usage), flush=True)
    print(_row(f"TOTAL ({total.repositories} repositories; shared blobs once)", total))


def add_command(commands: argparse._SubParsersAction) -> None:
    usage = commands.add_parser(
        "usage",
        help="stored bytes, manifests, tags, last push and pull per repository, and the total",
        description="Per repository: stored bytes (its blob links, referenced or not, and its "
        "manifest bodies), manifests, tags, last push, last pull; then the total, where a blob "
        "shared by several repositories counts once. README, Usage.",
    )
    usage.add_argument(
        "pattern",
        nargs="?",
        help="repositories to report: a name or a pattern where '*' matches any characters "
        "('team-a/*'), as grants take; default: all",
    )
    usage.add_argument("--json", action="store_true", help="as JSON: repositories and total")
    admin.target_options(usage)
    usage.set_defaults(run=report)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.auth.policy import InvalidName
    from skyport.storage.ports import StorageUnavailable

    try:
        args.run(args)
    except (InvalidName, admin.TargetError) as error:
        print(f"skyport usage: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport usage: AWS: {error}", file=sys.stderr)
        return 1
    return 0
