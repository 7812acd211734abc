"""`sam local invoke ApiFunction -e events/<name>.json`, for real and offline.

What runs is SAM's own path: `sam build` of the function and its layer, then
`sam local invoke`, which builds its "rapid" image (the Runtime Interface Emulator it
bundles, the layer under /opt) on the Lambda base image, mounts the function at
/var/task, starts the container and posts the event to the emulator. Its answer must
be what the handler answers in-process for the same event (tests/functions).

Three things stand in for what this machine cannot reach:

- the base image public.ecr.aws/lambda/python:3.12-<arch> cannot be pulled: a
  stand-in with the same name and layout is built from this host's python3.12 and
  the runtime interface client (scripts/lambda-image/build.py, cached under
  .aws-sam/lambda-image/) and imported; `--skip-pull-image` keeps SAM off the network;
- AWS is a moto server, on the address of a bridge of our own: SAM publishes the
  emulator's port (8080) on 127.0.0.1 through the daemon's default bridge network, so
  that daemon needs one (the session's `dockerd` has none), and the function reaches
  moto through the same bridge. (`--docker-network host` would not help: to SAM it
  only means "join no extra network".) SAM's STS call for the account id goes to moto
  too (AWS_ENDPOINT_URL_STS) instead of timing out;
- template.yaml is taken as it is but for two things (`local_template`): the
  function and layer are built for this host's architecture (arm64 would need qemu),
  and the function gets SKYPORT_S3_ENDPOINT and SKYPORT_DYNAMODB_ENDPOINT, empty,
  because `sam local invoke --env-vars` only sets variables the template declares.

Auth is off, as in tests/functions (the deployed default is on: Auth parameter).
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from handler_module import import_handler
from machine import cannot_run, runtime_python
from skyport.config import Settings
from skyport.storage.clients import AwsClients
from skyport_cli import sample_events
from skyport_cli.gateway import LambdaContext
from skyport_cli.serve import embedded_moto
from skyport_cli.stack import TEMPLATE_PATH, ensure_stack, function_environment, load_template

from .clients import run
from .conftest import Docker, private_dockerd

pytestmark = pytest.mark.e2e

ROOT = TEMPLATE_PATH.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"
IMAGE_BUILDER = ROOT / "scripts" / "lambda-image" / "build.py"
EVENTS = ROOT / "events"
REGION = "us-east-1"
FUNCTION = "ApiFunction"
# Written in-process before the invokes (a config and a layer uploaded, a manifest pushed).
SEED = [
    "02-post-upload-monolithic",
    "03-post-upload-start",
    "04-patch-upload-chunk",
    "05-get-upload-status",
    "06-put-upload-finish",
    "09-put-manifest",
]
INVOKED = ["01-get-version-check", "11-get-manifest", "08-get-blob"]
INVOKE_TIMEOUT = 120.0
BUILD_TIMEOUT = 300.0


def host_arch() -> str:
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
        platform.machine().lower()
    ]


def local_template(arch: str) -> dict:
    """template.yaml for `sam build` here: built for `arch`, and with the endpoint
    variables declared (empty: AWS) so that --env-vars can point them at moto."""
    template = load_template()
    function = template["Resources"][FUNCTION]
    layer = template["Resources"]["CoreLayer"]
    layer["Properties"]["CompatibleArchitectures"] = [arch]
    layer["Metadata"]["BuildArchitecture"] = arch
    layer["Properties"]["ContentUri"] = str(ROOT / layer["Properties"]["ContentUri"])
    # Every function is built (the API's environment names the others), each for `arch`
    # and from the checkout: the template copy lives elsewhere.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["Architectures"] = [arch]
            resource["Properties"]["CodeUri"] = str(ROOT / resource["Properties"]["CodeUri"])
    function["Properties"]["Environment"]["Variables"].update(
        SKYPORT_S3_ENDPOINT="", SKYPORT_DYNAMODB_ENDPOINT=""
    )
    return template


def load_event(name: str, upload_id: str | None = None) -> dict:
    text = (EVENTS / f"{name}.json").read_text()
    if upload_id:
        text = text.replace(sample_events.UPLOAD_ID, upload_id)
    return json.loads(text)


# --------------------------------------------------------------------------- network


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10/8 that no route or address of this host overlaps."""
    used = []
    for argv in (["ip", "-4", "-o", "route", "show", "table", "all"], ["ip", "-4", "-o", "addr"]):
        for line in run(argv).stdout.splitlines():
            for token in line.split():
                try:
                    net = ipaddress.ip_network(token, strict=False)
                except ValueError:
                    continue
                if net.prefixlen and isinstance(net, ipaddress.IPv4Network):
                    used.append(net)
    rng = random.Random()
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.{rng.randint(16, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    pytest.fail("no free /24 in 10.0.0.0/8 for the test bridge", pytrace=False)


@dataclass
class Bridge:
    name: str
    gateway: str  # the host's address on it: where the function finds moto


@pytest.fixture(scope="module")
def bridge() -> Iterator[Bridge]:
    """A Linux bridge of our own, the SAM daemon's default network (unique name and a
    subnet no one uses, so that concurrent runs and other daemons never clash)."""
    if shutil.which("ip") is None:
        cannot_run("ip (iproute2) not installed: scripts/install-system-deps.sh installs it")
    if os.geteuid() != 0:
        cannot_run("creating a network bridge needs root")
    name = f"skysam{secrets.token_hex(4)}"  # at most 15 characters
    subnet = _free_subnet()
    gateway = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    created = run(["ip", "link", "add", name, "type", "bridge"], check=False)
    if created.returncode != 0:
        cannot_run(f"cannot create a network bridge here: {created.stderr.strip()}")
    try:
        run(["ip", "addr", "add", gateway, "dev", name])
        run(["ip", "link", "set", name, "up"])
        yield Bridge(name, gateway.split("/")[0])
    finally:
        run(["ip", "link", "del", name], check=False)


@pytest.fixture(scope="module")
def sam_dockerd(bridge: Bridge) -> Iterator[Docker]:
    """A private dockerd whose default network is `bridge` (still no iptables: published
    ports go through docker-proxy, and the host talks to the bridge directly)."""
    with private_dockerd(f"--bridge={bridge.name}", "--ip-forward=false", prefix="skyport-samd-") as docker:
        yield docker


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    endpoint: str
    env: dict[str, str]  # the function's environment, as the in-process handler gets it


@pytest.fixture(scope="module")
def moto_on_bridge(bridge: Bridge) -> Iterator[str]:
    with embedded_moto(host=bridge.gateway) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def stack(moto_on_bridge: str) -> Stack:
    template = load_template()
    suffix = uuid.uuid4().hex[:12]
    env = {
        **function_environment(template),
        "SKYPORT_BUCKET": f"skyport-sam-{suffix}",
        "SKYPORT_TABLE": f"skyport-sam-{suffix}",
        "AWS_REGION": REGION,
        "SKYPORT_S3_ENDPOINT": moto_on_bridge,
        "SKYPORT_DYNAMODB_ENDPOINT": moto_on_bridge,
    }
    clients = AwsClients(
        Settings(
            bucket="-", table="-", region=REGION, s3_endpoint=moto_on_bridge, dynamodb_endpoint=moto_on_bridge
        )
    )
    ensure_stack(
        clients.s3,
        clients.dynamodb,
        env["SKYPORT_BUCKET"],
        env["SKYPORT_TABLE"],
        template=template,
        region=REGION,
    )
    return Stack(moto_on_bridge, env)


@pytest.fixture(scope="module")
def in_process(stack: Stack):
    """The handler as tests/functions imports it: once, with the function's environment;
    then the image the invokes read is pushed through it (SEED)."""
    module = import_handler(stack.env)

    def invoke(event: dict) -> dict:
        return module.handler(event, LambdaContext())

    upload_id = None
    for name in SEED:
        response = invoke(load_event(name, upload_id))
        assert response["statusCode"] == sample_events.EXPECTED[name], (name, response)
        upload_id = response.get("headers", {}).get("docker-upload-uuid", upload_id)
    return invoke


# --------------------------------------------------------------------------- SAM


@dataclass
class SamLocal:
    built_template: Path
    env_vars: Path
    layer_cache: Path
    env: dict[str, str]

    def invoke(self, event: Path) -> tuple[dict, str]:
        """`sam local invoke`: the function's answer, and what SAM and the function logged."""
        __tracebackhide__ = True
        result = run(
            [
                str(SAM),
                "local",
                "invoke",
                FUNCTION,
                "--template",
                str(self.built_template),
                "--event",
                str(event),
                "--env-vars",
                str(self.env_vars),
                "--skip-pull-image",
                "--layer-cache-basedir",
                str(self.layer_cache),
                "--region",
                REGION,
            ],
            env=self.env,
            timeout=INVOKE_TIMEOUT,
        )
        lines = result.stdout.strip().splitlines()
        assert lines, f"`sam local invoke` printed no answer\n--- stderr ---\n{result.stderr[-6000:]}"
        return json.loads(lines[-1]), result.stderr


def _start_sam_build(tmp: Path, arch: str, python: Path) -> tuple[subprocess.Popen, Path, Path]:
    template = tmp / "template.json"
    template.write_text(json.dumps(local_template(arch), indent=1))
    build, log = tmp / "build", tmp / "sam-build.log"
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": REGION,
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
        # functions/api/Makefile and layers/skyport/Makefile: wheels for this architecture.
        "PIP_PLATFORM": f"manylinux2014_{machine}",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SAM), "build", "--template", str(template), "--build-dir", str(build)],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return proc, build, log


@pytest.fixture(scope="module")
def sam_python() -> Path:
    """The function runtime's Python, for `sam build` and the base image (checked before
    any daemon starts, with aws-sam-cli)."""
    if not SAM.exists():
        cannot_run("aws-sam-cli is not installed: `make sam` installs it into .venv-sam")
    runtime = load_template()["Resources"][FUNCTION]["Properties"]["Runtime"]
    python = runtime_python(runtime.removeprefix("python"))
    if python is None:
        cannot_run(f"sam build needs {runtime} (the function's runtime) on PATH or under pyenv")
    return python


@pytest.fixture(scope="module")
def sam_local(
    sam_python: Path, sam_dockerd: Docker, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> SamLocal:
    python = sam_python
    runtime = load_template()["Resources"][FUNCTION]["Properties"]["Runtime"]
    arch = host_arch()
    tmp = tmp_path_factory.mktemp("sam-local")
    # sam build runs while the base image is built and imported.
    build_proc, build, build_log = _start_sam_build(tmp, arch, python)
    try:
        imported = run(
            [sys.executable, str(IMAGE_BUILDER), "--python", str(python), "--import"],
            env=sam_dockerd.client.env,
            timeout=BUILD_TIMEOUT,
        )
        tag = imported.stdout.split()[-1]
        assert tag == f"public.ecr.aws/lambda/{runtime.replace('python', 'python:')}-{arch}", tag
        build_proc.wait(BUILD_TIMEOUT)
    finally:
        if build_proc.poll() is None:
            build_proc.kill()
            build_proc.wait()
    output = build_log.read_text(errors="replace")
    assert build_proc.returncode == 0 and "Build Succeeded" in output, output[-6000:]

    env_vars = tmp / "env.json"
    env_vars.write_text(
        json.dumps(
            {
                FUNCTION: {
                    **{k: v for k, v in stack.env.items() if k.startswith("SKYPORT_")},
                    # Resolved from the template's parameters and resources otherwise.
                    "SKYPORT_AUTH": "off",
                    "SKYPORT_SIGNING_KEY_SECRET": "",
                    "SKYPORT_ADMIN_SECRET": "",
                }
            }
        )
    )
    env = {
        **sam_dockerd.client.env,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL_STS": stack.endpoint,
        "TMPDIR": str(tmp),
    }  # SAM's lock files for its image builds go there
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    return SamLocal(build / "template.yaml", env_vars, tmp / "layers", env)


# --------------------------------------------------------------------------- tests


def _without_signature_time(url: str) -> tuple:
    """A presigned URL, less what depends on the second it was signed in."""
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qsl(parts.query) if k not in ("X-Amz-Date", "X-Amz-Signature")}
    if "X-Amz-Credential" in query:  # KEY/DATE/REGION/s3/aws4_request
        key, _, *scope = query["X-Amz-Credential"].split("/")
        query["X-Amz-Credential"] = "/".join([key, *scope])
    return parts.scheme, parts.netloc, parts.path, sorted(query.items())


@pytest.mark.parametrize("name", INVOKED)
def test_sam_local_invoke_answers_as_the_handler_does(name: str, sam_local: SamLocal, in_process) -> None:
    got, logs = sam_local.invoke(EVENTS / f"{name}.json")
    expected = in_process(load_event(name))
    context = f"{name}: sam local invoke answered {got}\n--- sam/function log ---\n{logs[-6000:]}"
    assert got["statusCode"] == sample_events.EXPECTED[name], context
    assert "REPORT RequestId" in logs, context  # the emulator ran it
    if name == "08-get-blob":
        location, want = got["headers"].pop("location"), expected["headers"].pop("location")
        assert _without_signature_time(location) == _without_signature_time(want), context
        # Signed in the container with the function's credentials, and it works.
        assert httpx.get(location, timeout=30).content == sample_events.LAYER
    assert got == expected, context
