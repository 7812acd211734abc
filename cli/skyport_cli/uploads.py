"""`skyport uploads expire [--dry-run] [--json]`: remove what abandoned uploads left (expired
sessions, their multipart uploads and tail objects; skyport/upload_expiry.py). Deployed,
UploadExpiryFunction runs the same sweep every hour; this runs it now.

The registry is found as the admin commands find it (admin.py): the `make run` in this
directory, ``--stack NAME``, or ``--table NAME [--dynamodb-endpoint URL]`` with
``--bucket NAME [--s3-endpoint URL]`` (the sweep works on both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import admin


def _registry(args: argparse.Namespace):
    return admin.bucket_registry(args, "the sweep needs the bucket too")[0]


def expire(args: argparse.Namespace) -> None:
    registry = _registry(args)
    deadline = time.time() + args.max_seconds if args.max_seconds else None
    report = registry.upload_expiry.sweep(
        dry_run=args.dry_run, deadline=deadline, grace_seconds=args.grace_seconds
    )
    if args.json:
        print(json.dumps(report.fields(), indent=2))
        return
    verb = "would remove" if report.dry_run else "removed"
    for leftover in report.removed:
        where = f" ({leftover.repository})" if leftover.repository else ""
        print(f"{verb}\t{leftover.kind}\t{leftover.name}{where}\t{leftover.bytes}")
    print(
        f"{verb}: {report.sessions} expired sessions, {report.multipart_uploads} multipart uploads, "
        f"{report.tail_objects} tail objects, {admin.human_size(report.bytes)} ({report.bytes} bytes); "
        f"kept {report.kept} that a stored session still names"
    )
    if not report.complete:
        print("stopped at --max-seconds: run again to continue")
    for message in report.error_messages:
        print(f"error: {message}", file=sys.stderr)


def add_command(commands: argparse._SubParsersAction) -> None:
    uploads = commands.add_parser(
        "uploads",
        help="upload sessions: expire the abandoned ones",
        description="Upload sessions. `expire` removes expired sessions with their S3 multipart "
        "uploads and tail objects, and multipart uploads and tails no session names (README, "
        "Abandoned uploads).",
    )
    sub = uploads.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "expire",
        help="remove what abandoned uploads left behind",
        description="Remove expired upload sessions (never one a request is using), their "
        "multipart uploads and tail objects, and multipart uploads and tails under blobs/ and "
        "uploads/ that no session names and that are older than the grace period.",
    )
    p.add_argument("--dry-run", action="store_true", help="report what would go, remove nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument(
        "--grace-seconds",
        type=int,
        default=None,
        help="how old a multipart upload or tail no session names must be before it goes "
        "(default: the upload TTL, 7 days)",
    )
    p.add_argument("--max-seconds", type=float, default=0, help="stop after this long (default: no limit)")
    admin.target_options(p)
    p.add_argument("--bucket", help="with --table: the registry's bucket")
    p.add_argument("--s3-endpoint", help="with --bucket: an S3 endpoint (moto, local)")
    p.set_defaults(run=expire)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.storage.ports import StorageUnavailable

    try:
        args.run(args)
    except admin.TargetError as error:
        print(f"skyport uploads {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport uploads {args.action}: AWS: {error}", file=sys.stderr)
        return 1
    return 0
