"""The `skyport` command. `skyport serve` runs the registry locally; `skyport user|robot|
grant|revoke|grants|repo` administer users, robots and permissions (admin.py)."""

from __future__ import annotations

import argparse
import os
import sys


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="skyport", description="Skyport: a serverless OCI registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the registry locally",
        description="Serve the registry on HOST:PORT. Without --s3-endpoint and --dynamodb-endpoint "
        "an embedded moto server provides S3 and DynamoDB, in memory.",
    )
    serve.add_argument("--host", default=env.get("SKYPORT_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(env.get("SKYPORT_PORT", "5000")))
    serve.add_argument(
        "--s3-endpoint",
        default=env.get("SKYPORT_S3_ENDPOINT"),
        help="an external S3-compatible endpoint (default: embedded moto)",
    )
    serve.add_argument(
        "--dynamodb-endpoint",
        default=env.get("SKYPORT_DYNAMODB_ENDPOINT"),
        help="an external DynamoDB endpoint (default: embedded moto)",
    )
    serve.add_argument(
        "--moto-port",
        type=int,
        default=int(env.get("SKYPORT_MOTO_PORT", "0")),
        help="port of the embedded moto server (default: any free port)",
    )
    serve.add_argument("--bucket", default=env.get("SKYPORT_BUCKET", "skyport-blobs"))
    serve.add_argument("--table", default=env.get("SKYPORT_TABLE", "skyport-metadata"))
    serve.add_argument("--region", default=env.get("AWS_REGION", "us-east-1"))
    serve.add_argument(
        "--blob-delivery",
        choices=("redirect", "proxy"),
        default=env.get("SKYPORT_BLOB_DELIVERY", "redirect"),
        help="redirect blob GETs to S3 (default) or stream them through the server",
    )
    serve.add_argument(
        "--gateway",
        choices=("asgi", "lambda"),
        default=env.get("SKYPORT_GATEWAY") or "asgi",
        help="serve the app directly (asgi, default) or as deployed: the Lambda handler "
        "behind a local API Gateway (lambda)",
    )
    serve.add_argument(
        "--auth",
        choices=("on", "off"),
        default=(env.get("SKYPORT_AUTH") or "off").lower(),
        help="off (default): open, for trials; on: token auth, with an admin user "
        "`admin` whose password is SKYPORT_ADMIN_PASSWORD (generated and shown "
        "once when unset)",
    )
    serve.add_argument(
        "--upload-service",
        choices=("on", "off"),
        default=(env.get("SKYPORT_UPLOAD_SERVICE") or "off").lower(),
        help="on: the upload service too, on --upload-port, as deployed beside the Lambda API "
        "(started uploads get a Location there, with a capability; bodies of any size)",
    )
    serve.add_argument(
        "--upload-port",
        type=int,
        default=int(env.get("SKYPORT_UPLOAD_PORT") or "0"),
        help="the upload service's port (default: --port + 1)",
    )
    serve.add_argument(
        "--hooks",
        choices=("on", "off"),
        default=(env.get("SKYPORT_HOOKS") or "on").lower(),
        help="on (default): the events, replication and webhook functions run here as deployed, "
        "on the same moto (the table's stream -> the bus -> queues -> functions); off: none",
    )
    moto = commands.add_parser(
        "moto",
        help="a moto server alone, for registries that outlive each other on the same storage",
        description="Serve moto (S3, DynamoDB and its streams, SQS, EventBridge, Secrets Manager) "
        "until stopped; point `skyport serve --s3-endpoint URL --dynamodb-endpoint URL` at it.",
    )
    moto.add_argument("--host", default="127.0.0.1")
    moto.add_argument("--port", type=int, default=0, help="default: any free port (printed)")
    uploads = commands.add_parser(
        "serve-uploads",
        help="serve the upload service alone (its container's command)",
        description="The upload service: PATCH/PUT/GET/DELETE of upload sessions, authorized by "
        "their capability, and GET /healthz. Settings from the environment: SKYPORT_BUCKET, "
        "SKYPORT_TABLE, AWS_REGION, SKYPORT_AUTH, SKYPORT_UPLOAD_KEY (or SKYPORT_UPLOAD_KEY_SECRET), "
        "SKYPORT_REGISTRY_URL.",
    )
    uploads.add_argument("--host", default="0.0.0.0")
    uploads.add_argument("--port", type=int, default=8080)
    from .admin import add_commands

    add_commands(commands)
    from . import pull, push  # `skyport push` / `skyport pull`: straight to and from S3

    push.add_command(commands)
    pull.add_command(commands)
    from . import webhooks  # `skyport webhook add|list|remove|test`

    webhooks.add_command(commands)
    from . import replication  # `skyport replication add|list|remove|status` (issue 11)

    replication.add_command(commands)
    from . import immutability  # `skyport immutability add|list|remove` (issue 12)

    immutability.add_command(commands)
    from . import uploads as upload_sessions  # `skyport uploads expire` (issue 12)

    upload_sessions.add_command(commands)
    from . import usage  # `skyport usage [PATTERN]` (issue 12)

    usage.add_command(commands)
    from . import retention  # `skyport retention add|list|remove|preview|run` (issue 12)

    retention.add_command(commands)
    from . import gc  # `skyport gc` (issue 12)

    gc.add_command(commands)
    from . import cache  # `skyport cache add|list|remove` (issue 13)

    cache.add_command(commands)
    from . import scan_policy, scanning  # `skyport scan|sbom|vulns`, `skyport scan-policy` (issue 14)

    scanning.add_command(commands)
    scan_policy.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .serve import serve

        sys.exit(serve(args))
    if args.command in ("push", "pull"):
        from . import pull, push

        sys.exit((push if args.command == "push" else pull).run(args))
    if args.command == "webhook":
        from . import webhooks

        sys.exit(webhooks.run(args))
    if args.command == "moto":
        from .serve import moto

        sys.exit(moto(args))
    if args.command == "replication":
        from . import replication

        sys.exit(replication.run(args))
    if args.command == "immutability":
        from . import immutability

        sys.exit(immutability.run(args))
    if args.command == "usage":
        from . import usage

        sys.exit(usage.run(args))
    if args.command == "uploads":
        from . import uploads as upload_sessions

        sys.exit(upload_sessions.run(args))
    if args.command == "retention":
        from . import retention

        sys.exit(retention.run(args))
    if args.command == "gc":
        from . import gc

        sys.exit(gc.run(args))
    if args.command == "cache":
        from . import cache

        sys.exit(cache.run(args))
    if args.command in ("scan", "sbom", "vulns"):
        from . import scanning

        sys.exit(scanning.run(args))
    if args.command == "scan-policy":
        from . import scan_policy

        sys.exit(scan_policy.run(args))
    if args.command == "serve-uploads":
        from .serve import serve_uploads

        sys.exit(serve_uploads(args))
    from .admin import run

    sys.exit(run(args))


if __name__ == "__main__":
    main()
