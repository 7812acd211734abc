"""`skyport serve`: the registry on uvicorn, on an embedded moto or external S3/DynamoDB."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from .stack import ensure_stack


@contextlib.contextmanager
def embedded_moto(port: int = 0) -> Iterator[str]:
    """A moto server on loopback for S3 and DynamoDB; yields its endpoint."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 call otherwise

    # moto accepts any credentials, but boto3 wants some; never override real ones.
    for name, value in (("AWS_ACCESS_KEY_ID", "skyport-local"), ("AWS_SECRET_ACCESS_KEY", "skyport-local")):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.stop()


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from skyport.config import Settings
    from skyport.registry import Registry
    from skyport_api.app import create_app

    with contextlib.ExitStack() as stack:
        s3_endpoint, dynamodb_endpoint = args.s3_endpoint, args.dynamodb_endpoint
        backend = "external S3/DynamoDB"
        if not (s3_endpoint and dynamodb_endpoint):
            moto = stack.enter_context(embedded_moto(args.moto_port))
            s3_endpoint, dynamodb_endpoint = s3_endpoint or moto, dynamodb_endpoint or moto
            backend = f"embedded moto at {moto} (in memory: gone when this stops)"
        settings = Settings.from_env({
            "SKYPORT_BUCKET": args.bucket, "SKYPORT_TABLE": args.table, "AWS_REGION": args.region,
            "SKYPORT_S3_ENDPOINT": s3_endpoint, "SKYPORT_DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "SKYPORT_BLOB_DELIVERY": args.blob_delivery,
            **{k: v for k, v in os.environ.items() if k in ("SKYPORT_PRESIGN_EXPIRES", "SKYPORT_PART_SIZE")},
        })
        registry = Registry(settings)
        ensure_stack(registry.clients.s3, registry.clients.dynamodb, args.bucket, args.table,
                     region=args.region)
        address = f"{args.host}:{args.port}"
        print(
            f"Skyport registry on http://{address}\n"
            f"  storage: {backend}; bucket {args.bucket}, table {args.table}\n"
            f"  auth: off (local trial: anyone who reaches this address can push and pull)\n"
            f"  try:  docker tag IMAGE {address}/team/app:1.0 && docker push {address}/team/app:1.0\n"
            f"  Ctrl-C stops it.",
            flush=True,
        )
        uvicorn.run(create_app(registry), host=args.host, port=args.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=5)
    return 0
