"""`skyport serve`: the registry on uvicorn, on an embedded moto or external S3/DynamoDB."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from .admin import remove_state, write_state
from .stack import ensure_stack, function_environment

# Settings this command takes from the environment as they are.
_PASSED_THROUGH = (
    "SKYPORT_PRESIGN_EXPIRES",
    "SKYPORT_PART_SIZE",
    "SKYPORT_TOKEN_TTL",
    "SKYPORT_REFRESH_TOKEN_TTL",
    "SKYPORT_TOKEN_SERVICE",
    "SKYPORT_TOKEN_REALM",
    "SKYPORT_AUTOMATIC_MOUNT",
)
ADMIN_USER = "admin"


@contextlib.contextmanager
def embedded_moto(port: int = 0, host: str = "127.0.0.1") -> Iterator[str]:
    """A moto server for S3 and DynamoDB, on loopback unless told; yields its endpoint."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 call otherwise

    # moto accepts any credentials, but boto3 wants some; never override real ones.
    for name, value in (("AWS_ACCESS_KEY_ID", "skyport-local"), ("AWS_SECRET_ACCESS_KEY", "skyport-local")):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.stop()


def _allocator_as_on_lambda() -> None:
    """The function's glibc tuning from template.yaml (``MALLOC_MMAP_THRESHOLD_``, which
    glibc reads when a process starts, as on Lambda), applied to this running process."""
    value = function_environment().get("MALLOC_MMAP_THRESHOLD_")
    if not value or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return  # glibc already read the environment's
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, int(value))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: that allocator's defaults


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    _allocator_as_on_lambda()
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
        settings = Settings.from_env(
            {
                "SKYPORT_BUCKET": args.bucket,
                "SKYPORT_TABLE": args.table,
                "AWS_REGION": args.region,
                "SKYPORT_S3_ENDPOINT": s3_endpoint,
                "SKYPORT_DYNAMODB_ENDPOINT": dynamodb_endpoint,
                "SKYPORT_BLOB_DELIVERY": args.blob_delivery,
                "SKYPORT_AUTH": args.auth,
                # The signing key stays in this process: the table is reachable by anyone
                # on loopback (the embedded moto checks no credentials).
                "SKYPORT_SIGNING_KEY_IN_MEMORY": "on",
                **{k: v for k, v in os.environ.items() if k in _PASSED_THROUGH},
            }
        )
        registry = Registry(settings)
        ensure_stack(
            registry.clients.s3, registry.clients.dynamodb, args.bucket, args.table, region=args.region
        )
        address = f"{args.host}:{args.port}"
        auth_banner = _prepare_auth(registry, address)
        # Tells `skyport user|robot|grant|repo ...` in this directory where the stack is.
        state = write_state(
            {
                "address": address,
                "table": args.table,
                "bucket": args.bucket,
                "region": args.region,
                "dynamodb_endpoint": dynamodb_endpoint,
                "s3_endpoint": s3_endpoint,
            }
        )
        stack.callback(remove_state, state)
        app = create_app(registry)
        front = "the FastAPI app"
        if args.gateway == "lambda":
            app = _behind_lambda_gateway(settings)
            front = "a local API Gateway in front of the Lambda handler (payload 2.0, 6 MiB events)"
        print(
            f"Skyport registry on http://{address}\n"
            f"  serving: {front}\n"
            f"  storage: {backend}; bucket {args.bucket}, table {args.table}\n"
            f"  auth: {auth_banner}\n"
            f"  try:  docker tag IMAGE {address}/team/app:1.0 && docker push {address}/team/app:1.0\n"
            f"  Ctrl-C stops it.",
            flush=True,
        )
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    return 0


def _behind_lambda_gateway(settings):
    """The real Lambda entry point (skyport_api.handler), configured the way template.yaml
    configures the function, behind the local API Gateway."""
    from .gateway import LambdaGateway
    from .stack import function_environment, function_timeout

    # The template's values unless this shell sets its own; where the stack is, always.
    for name, value in function_environment().items():
        os.environ.setdefault(name, value)
    os.environ.update(
        {
            "SKYPORT_BUCKET": settings.bucket,
            "SKYPORT_TABLE": settings.table,
            "AWS_REGION": settings.region,
            "SKYPORT_BLOB_DELIVERY": settings.blob_delivery,
            "SKYPORT_AUTH": settings.auth,
            "SKYPORT_SIGNING_KEY_IN_MEMORY": "on" if settings.signing_key_in_memory else "",
            "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
            "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        }
    )
    from skyport_api.handler import handler  # reads the environment once, as in Lambda's init phase

    return LambdaGateway(handler, function_timeout=function_timeout(), region=settings.region)


def _prepare_auth(registry, address: str) -> str:
    """Auth on: the admin user (SKYPORT_ADMIN_PASSWORD, or generated and shown once); the
    signing key is made now, in this process's memory. Returns the banner's line."""
    if not registry.settings.auth_enabled:
        return (
            "off (local trial: anyone who reaches this address can push and pull; "
            "SKYPORT_AUTH=on make run requires logins)"
        )
    import secrets

    password = os.environ.get("SKYPORT_ADMIN_PASSWORD")
    shown = ""
    if password:
        registry.identities.ensure_admin(ADMIN_USER, password)
        shown = "password from SKYPORT_ADMIN_PASSWORD"
    elif registry.auth.identity(ADMIN_USER).anonymous:
        password = secrets.token_urlsafe(18)
        registry.identities.ensure_admin(ADMIN_USER, password)
        shown = f"generated password (shown once): {password}"
    else:
        shown = "exists already, password unchanged"
    registry.auth.keys.load()  # makes the signing key now rather than on the first login
    return (
        f"on (token auth; anonymous callers may pull public repositories only)\n"
        f"    admin user: {ADMIN_USER}, {shown}\n"
        f"    docker login -u {ADMIN_USER} {address}; more users: skyport user add NAME --help"
    )
