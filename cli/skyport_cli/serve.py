"""`skyport serve`: the registry on uvicorn, on an embedded moto or external S3/DynamoDB;
with ``--upload-service on`` the upload service too, on a second port of the same process.
`skyport serve-uploads`: the upload service alone (its container's command)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import replace

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
    "SKYPORT_IMMUTABILITY_CACHE_SECONDS",  # issue 12: how stale a rule change may be here
    "SKYPORT_PULL_RECORD_SECONDS",  # issue 12: how often a manifest's last pull is written
    # Issue 14: the OSV data's source (a directory locally: the shipped data set by default),
    # ecosystems and how often scans look for a newer mirror.
    "SKYPORT_OSV_SOURCE",
    "SKYPORT_OSV_ECOSYSTEMS",
    "SKYPORT_OSV_REFRESH_SECONDS",
    # Issue 13: the pull-through cache's timings (a local fill runs in a thread: no
    # SKYPORT_CACHE_FILL_FUNCTION), and the blob link cache's bounds.
    "SKYPORT_CACHE_TAG_RECHECK_SECONDS",
    "SKYPORT_CACHE_RULES_SECONDS",
    "SKYPORT_CACHE_FILL_WAIT_SECONDS",
    "SKYPORT_CACHE_UPSTREAM_TIMEOUT_SECONDS",
    "SKYPORT_BLOB_CACHE_ENTRIES",
    "SKYPORT_BLOB_CACHE_SECONDS",
    # Issue 14: the scan on push (the local pipeline runs the scan functions).
    "SKYPORT_SCAN_ON_PUSH",
    "SKYPORT_SCAN_LEASE_SECONDS",
    "SKYPORT_RESCAN_PULLED_DAYS",
    "SKYPORT_SCAN_MAX_LAYER_BYTES",
    "SKYPORT_SCAN_MAX_TOTAL_BYTES",
)
ADMIN_USER = "admin"
# Keep-alive of `skyport serve-uploads`: above the load balancer's idle timeout.
UPLOAD_SERVICE_KEEP_ALIVE_SECONDS = 630


def dynamodb_requests_one_at_a_time() -> None:
    """Make moto's DynamoDB as isolated as DynamoDB itself: one request at a time.

    moto runs a TransactWriteItems by deep-copying every table it touches and, when a
    condition fails, restoring that copy: a write another thread made meanwhile is undone,
    and a transaction's half-applied items are visible to reads. DynamoDB serializes
    transactions with every other write, so that never happens there; served from several
    threads (uvicorn's workers, concurrent pushes), moto lost freshly created upload
    sessions. Idempotent; affects this process's moto only."""
    import threading

    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_skyport_serialized", False):
        return
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def one_at_a_time(self: DynamoHandler) -> object:
        with lock:
            return call_action(self)

    one_at_a_time._skyport_serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]


@contextlib.contextmanager
def embedded_moto(port: int = 0, host: str = "127.0.0.1") -> Iterator[str]:
    """A moto server for S3 and DynamoDB, on loopback unless told; yields its endpoint."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 call otherwise

    # moto accepts any credentials, but boto3 wants some; never override real ones.
    for name, value in (("AWS_ACCESS_KEY_ID", "skyport-local"), ("AWS_SECRET_ACCESS_KEY", "skyport-local")):
        os.environ.setdefault(name, value)
    dynamodb_requests_one_at_a_time()
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
        _mirror_local_osv_data(registry)
        hooks, hooks_banner = (
            None,
            "  hooks: off (--hooks on runs the events, replication and webhook functions here)\n",
        )
        if args.hooks == "on":
            hooks, hooks_banner = _local_hook_resources(args, registry, dynamodb_endpoint)
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
                # Where SQS, EventBridge and Secrets Manager are (the hooks' resources and secrets).
                "hooks_endpoint": dynamodb_endpoint if hooks is not None else None,
            }
        )
        stack.callback(remove_state, state)
        if hooks is not None:
            hooks_banner = _start_local_pipeline(stack, args, registry, hooks, s3_endpoint, dynamodb_endpoint)
        upload_service = None
        if args.upload_service == "on":
            upload_service, settings = _local_upload_service(args, settings, registry, address)
            registry = Registry(settings, clients=registry.clients)
        app = create_app(registry)
        front = "the FastAPI app"
        if args.gateway == "lambda":
            app = _behind_lambda_gateway(settings)
            front = "a local API Gateway in front of the Lambda handler (payload 2.0, 6 MiB events)"
        uploads_banner = ""
        if upload_service is not None:
            uploads_banner = (
                f"  uploads: the upload service on {settings.upload_endpoint} (PATCH/PUT of any size;"
                " POST answers a Location there, with a capability)\n"
            )
        servers = [_server(app, args.host, args.port)]
        if upload_service is not None:
            servers.append(_server(upload_service, args.host, args.upload_port or args.port + 1))
        # Listening before the banner: whoever waits for it (a script, a test, a person
        # pasting the docker command) can connect at once; a port in use fails here, banner-less.
        sockets = [_listening_socket(server) for server in servers]
        print(
            f"Skyport registry on http://{address}\n"
            f"  serving: {front}\n"
            f"{uploads_banner}"
            f"{hooks_banner}"
            f"  storage: {backend}; bucket {args.bucket}, table {args.table}\n"
            f"  auth: {auth_banner}\n"
            f"  try:  docker tag IMAGE {address}/team/app:1.0 && docker push {address}/team/app:1.0\n"
            f"  Ctrl-C stops it.",
            flush=True,
        )
        asyncio.run(_serve_all(servers, sockets))
    return 0


def _local_hook_resources(args, registry, endpoint: str):
    """The hooks' bus, queues and rules (stack.ensure_hooks) on the DynamoDB endpoint's
    server, which must be a whole moto (SQS, EventBridge and Secrets Manager there too).
    Returns them and no banner, or None and the banner saying why hooks are off (a
    DynamoDB-only endpoint, such as DynamoDB Local)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .pipeline import aws_endpoints
    from .stack import ensure_hooks

    # Before any SQS, EventBridge or Secrets Manager client is created.
    aws_endpoints(endpoint)
    # Lambda's EMF lines would flood this terminal; POWERTOOLS_METRICS_DISABLED=false shows them.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        return ensure_hooks(registry.clients.events, registry.clients.sqs, args.table), ""
    except (BotoCoreError, ClientError) as error:
        return None, (
            f"  hooks: off: {endpoint} serves no SQS or EventBridge ({error}); point --dynamodb-endpoint "
            "at a moto server (skyport moto) for them\n"
        )


def _mirror_local_osv_data(registry) -> None:
    """Issue 14: scans need the OSV data in the bucket from the first push, not from the
    scheduled mirror's first run a day later. Locally the source is a directory (the data
    set shipped with the core unless SKYPORT_OSV_SOURCE names another), mirrored now; the
    pipeline's OsvMirrorFunction gets the same source (pipeline.py lets SKYPORT_OSV_* of
    this shell replace the template's URL): a local run never fetches from the network.
    A URL in SKYPORT_OSV_SOURCE, explicitly set, is left to the scheduled runs."""
    from skyport.storage.s3 import S3ObjectStore
    from skyport.vulnerabilities.mirror import is_url, mirror, shipped_data

    source = registry.settings.osv_source or str(shipped_data())
    os.environ["SKYPORT_OSV_SOURCE"] = source
    if not is_url(source):
        store = S3ObjectStore(registry.clients.s3, registry.settings.bucket)
        mirror(source, store, registry.settings.osv_ecosystems)


def _start_local_pipeline(stack, args, registry, hooks, s3_endpoint: str, dynamodb_endpoint: str) -> str:
    """The hooks pipeline as deployed (pipeline.py), in threads of this process, stopped
    with it. Returns the banner's lines."""
    from .pipeline import LocalPipeline, LocalStack

    pipeline = LocalPipeline(
        LocalStack(
            table=args.table,
            bucket=args.bucket,
            region=args.region,
            s3_endpoint=s3_endpoint,
            dynamodb_endpoint=dynamodb_endpoint,
            hooks=hooks,
        ),
        registry.clients,
    )
    lines = pipeline.start()
    stack.callback(pipeline.stop)
    return "  hooks: on, as deployed: " + "; ".join(lines) + "\n"


def moto(args: argparse.Namespace) -> int:
    """`skyport moto`: a moto server alone (S3, DynamoDB and its streams, SQS, EventBridge,
    Secrets Manager, ...), for registries that come and go on the same storage
    (`skyport serve --s3-endpoint URL --dynamodb-endpoint URL`). In memory: gone when it stops."""
    import signal
    import threading

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with embedded_moto(args.port, args.host) as endpoint:
        print(f"moto on {endpoint} (in memory; Ctrl-C stops it)", flush=True)
        try:
            while not stopped.wait(1):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def _server(app, host: str, port: int):
    import uvicorn

    # access_log off: an access log line holds the query string, and on the upload
    # service that is the upload's capability (never logged).
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    return uvicorn.Server(config)


def _listening_socket(server):
    """The server's socket, bound and listening: connections from now on wait in the
    backlog until the server accepts them. A port that cannot be bound ends the process
    (uvicorn logs why and exits 3)."""
    sock = server.config.bind_socket()
    sock.listen(2048)  # uvicorn's own default backlog
    return sock


async def _serve_all(servers, sockets) -> None:
    """Serve every server on its listening socket, on this event loop; when one stops
    (Ctrl-C, or a failure at start), the others stop too."""
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    if pending:
        await asyncio.wait(pending)


def _local_upload_service(args: argparse.Namespace, settings, registry, address: str):
    """The upload service beside `skyport serve`'s API, as deployed beside the Lambda API:
    its own port, the same storage, a capability key made for this process (never
    stored, like the signing key) unless SKYPORT_UPLOAD_KEY gives one. Returns its app
    and the API's settings, which now name it as their upload endpoint."""
    import secrets

    from skyport.registry import Registry
    from skyport_api.upload_service import create_upload_app

    port = args.upload_port or args.port + 1
    # A wildcard address is where to listen, not where to connect.
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    endpoint = os.environ.get("SKYPORT_UPLOAD_ENDPOINT") or f"http://{host}:{port}"
    key = os.environ.get("SKYPORT_UPLOAD_KEY") or secrets.token_urlsafe(32)
    api_settings = replace(settings, upload_endpoint=endpoint, upload_key=key)
    # No body limit (uvicorn, not Lambda), and the 201 of a finished upload names the
    # blob on the registry's address.
    upload_settings = replace(api_settings, max_request_body=0, registry_url=f"http://{address}")
    app = create_upload_app(Registry(upload_settings, clients=registry.clients))
    return app, api_settings


def serve_uploads(args: argparse.Namespace) -> int:
    """The upload service alone: the container's command (Dockerfile CMD). Settings from
    the environment (SKYPORT_BUCKET, SKYPORT_TABLE, AWS_REGION, SKYPORT_AUTH,
    SKYPORT_UPLOAD_KEY or SKYPORT_UPLOAD_KEY_SECRET, SKYPORT_REGISTRY_URL)."""
    from skyport.config import Settings
    from skyport.registry import Registry
    from skyport_api.upload_service import create_upload_app

    # No _allocator_as_on_lambda() here: the image holds no template.yaml to read it from;
    # the task definition sets MALLOC_MMAP_THRESHOLD_ itself, read by glibc at start.
    try:
        settings = replace(Settings.from_env(os.environ), max_request_body=0)
        registry = Registry(settings)
        registry.capabilities.ready()  # no key, no service: refuse at start, not at the first PATCH
    except KeyError as missing:
        print(f"skyport serve-uploads: {missing.args[0]} is not set", file=sys.stderr)
        return 2
    except ValueError as invalid:
        print(f"skyport serve-uploads: {invalid}", file=sys.stderr)
        return 2
    server = _server(create_upload_app(registry), args.host, args.port)
    # Above the load balancer's idle timeout (template.yaml UploadLoadBalancer: 600 s), so
    # the balancer, never the server, closes an idle connection (else a request may meet a
    # socket the server just closed: 502). The ELB guide asks targets for exactly this.
    server.config.timeout_keep_alive = UPLOAD_SERVICE_KEEP_ALIVE_SECONDS
    sock = _listening_socket(server)
    print(
        f"Skyport upload service on http://{args.host}:{args.port} (bucket {settings.bucket}, "
        f"table {settings.table}, auth {settings.auth}; health check GET /healthz)",
        flush=True,
    )
    asyncio.run(_serve_all([server], [sock]))
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
            # The upload service beside it (--upload-service on), or none; the key is this
            # process's (the template's secret is not reachable locally).
            "SKYPORT_UPLOAD_ENDPOINT": settings.upload_endpoint or "",
            "SKYPORT_UPLOAD_KEY": settings.upload_key or "",
            "SKYPORT_UPLOAD_KEY_SECRET": "",
            # Pull-through cache fills run in a thread of this process (no fill function here).
            "SKYPORT_CACHE_FILL_FUNCTION": "",
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
