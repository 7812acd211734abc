"""`skyport gc [--dry-run] [--grace DURATION] [--untagged] [--json]`: online garbage collection
(skyport/gc), against the `make run` registry in this directory (``.skyport/serve.json``),
a deployed ``--stack NAME``, or ``--table NAME --bucket NAME [--dynamodb-endpoint URL]
[--s3-endpoint URL]``.

A real run is the same run the scheduled GcFunction makes: if one is in progress (its
lease held), this one says so and stops; if one was left unfinished, this one continues
it (its start and grace period kept).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import admin
from .admin import human_size

KINDS = ("manifests", "links", "blobs", "objects")


def _registry(args: argparse.Namespace):
    return admin.bucket_registry(args, "garbage collection needs the bucket too")


def _print_text(report: dict, where: str) -> None:
    if report.get("busy"):
        print(f"skyport gc: {report['message']} ({where}); try again later")
        return
    dry = report["dry_run"]
    verb = "would remove" if dry else "removed"
    print(
        f"garbage collection of {where}: {'dry run' if dry else 'run ' + report['run_id']}"
        f"{' (continued)' if report['resumed'] else ''}, grace {report['grace_seconds']:g} s"
    )
    for entry in report["listed"].get("manifests", []):
        print(f"  manifest {entry['repository']}@{entry['digest']}  (untagged)")
    for entry in report["listed"].get("links", []):
        print(f"  link   {entry['repository']}@{entry['digest']}  ({human_size(entry['bytes'])})")
    for entry in report["listed"].get("blobs", []):
        print(f"  blob   {entry['digest']}  {human_size(entry['bytes'])}  {entry['key']}")
    for entry in report["listed"].get("objects", []):
        print(f"  object {entry['key']}  {human_size(entry['bytes'])}  (no record names it)")
    for kind in KINDS:
        if len(report["listed"].get(kind, [])) < report["removed"][kind]:
            print(f"  ... {kind}: the first {report['listed_limit']} are listed")
    removed, sizes = report["removed"], report["bytes"]
    untagged = f"{removed['manifests']} untagged manifests, " if report["untagged"] else ""
    print(
        f"{verb}: {untagged}{removed['links']} links, "
        f"{removed['blobs']} blobs ({human_size(sizes['blobs'])}), "
        f"{removed['objects']} orphan objects ({human_size(sizes['objects'])}); "
        f"total {human_size(report['total_bytes'])}"
    )
    if dry:
        print(
            "dry run: nothing was written. This is what a run started now would remove if "
            "nothing is pushed, mounted or uploaded meanwhile; a real run checks each item "
            "again, under its condition, as it removes it."
        )
    elif not report["complete"]:
        print(f"not finished (phase {report['phase']}): the next `skyport gc` or scheduled run continues it")


def gc(args: argparse.Namespace) -> int:
    from skyport.gc import parse_duration

    registry, where = _registry(args)
    grace_ms = registry.settings.gc_grace_seconds * 1000
    if args.grace is not None:
        grace_ms = parse_duration(args.grace)
    report = registry.gc.run(grace_ms, dry_run=args.dry_run, page_size=args.page_size, untagged=args.untagged)
    if args.json:
        print(json.dumps({**report, "where": where}, indent=2))
    else:
        _print_text(report, where)
    return 2 if report.get("busy") else 0


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "gc",
        help="garbage collection: remove unreferenced blobs and crash leftovers",
        description="Remove, while the registry keeps running, the blobs no manifest references "
        "(links per repository, then the blobs no repository links, then their S3 objects) and "
        "the objects under blobs/ and uploads/ that nothing names, all unused for the grace "
        "period. README, Garbage collection.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would go, write nothing")
    parser.add_argument(
        "--grace",
        metavar="DURATION",
        help="keep what was used within this period: 24h (default: SKYPORT_GC_GRACE, else 24h), 90m, 30s, 0",
    )
    parser.add_argument(
        "--untagged",
        action="store_true",
        help="untagged manifests go too (no tag names them, no index of the repository lists them, "
        "not a referrer of a manifest still there), with the usual manifest.deleted events",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument("--page-size", type=int, default=500, help=argparse.SUPPRESS)
    admin.target_options(parser)
    parser.add_argument("--bucket", help="with --table: the bucket (S3)")
    parser.add_argument("--s3-endpoint", help="with --table: an S3 endpoint (moto, local)")
    parser.set_defaults(run=gc)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.storage.ports import StorageUnavailable

    try:
        return args.run(args)
    except (admin.TargetError, ValueError) as error:
        print(f"skyport gc: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport gc: AWS: {error}", file=sys.stderr)
        return 1
