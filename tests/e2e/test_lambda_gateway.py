"""Real clients against the registry as deployed: the Lambda handler behind the local
API Gateway (`skyport serve --gateway lambda`, what `SKYPORT_GATEWAY=lambda make run`
starts), with Lambda's 6 MiB event limit and API Gateway's rules.

What holds there: images whose layers fit in one request push and pull with
skopeo; bigger blobs need a chunking client (regctl-style, tests/e2e/chunked.py).
A standard client pushing a bigger layer in one request is refused (413), and the
registry is left without a half-written image.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .chunked import pull_by_redirect, push_in_chunks
from .clients import Client, base_env, unique
from .conftest import READY_TIMEOUT, Registry, _free_port, _log_tail, _stop, _wait_ready
from .images import MiB, build_oci_layout, read_oci_layout
from .test_skopeo import assert_same_blobs, inspect_raw, pull, push, ref

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway_registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log = tmp_path_factory.mktemp("gateway") / "skyport.log"
    roots = [str(p) for p in request.config.getini("pythonpath")]
    inherited = os.environ.get("PYTHONPATH")
    env = base_env(
        PYTHONPATH=os.pathsep.join(roots + ([inherited] if inherited else [])), SKYPORT_GATEWAY="lambda"
    )
    argv = [sys.executable, "-m", "skyport_cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=request.config.rootpath,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    reg = Registry(host=f"127.0.0.1:{port}", proc=proc, log=log)
    why = _wait_ready(reg, time.monotonic() + READY_TIMEOUT)
    if why:
        _stop(proc, "the registry")
        pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
    try:
        yield reg
    finally:
        _stop(proc, "the registry")


def test_it_is_the_lambda_handler_answering(gateway_registry) -> None:
    with gateway_registry.http() as http:
        response = http.post("/v2/team/probe/blobs/uploads/")
    assert response.status_code == 202
    assert "apigw-requestid" in response.headers  # API Gateway's header, not uvicorn's app
    assert int(response.headers["OCI-Chunk-Max-Length"]) < 6 * MiB * 3 // 4


def test_skopeo_round_trip_of_layers_that_fit(skopeo: Client, gateway_registry, tmp_path: Path) -> None:
    layout = build_oci_layout(tmp_path / "src", [3 * MiB, 256 * 1024, 1024], tag="1.0")
    repo = unique("team/lambda/app")
    push(skopeo, layout, ref(gateway_registry, repo, "1.0"))
    assert inspect_raw(skopeo, ref(gateway_registry, repo, "1.0")) == layout.raw
    pull(skopeo, ref(gateway_registry, repo, "1.0"), tmp_path / "back", "1.0")
    descriptor, manifest, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert descriptor["digest"] == layout.digest and manifest == layout.raw
    assert_same_blobs(layout, blobs)


def test_skopeo_layer_too_big_for_one_request_is_refused(
    skopeo: Client, gateway_registry, tmp_path: Path
) -> None:
    """skopeo sends a layer in one PATCH: past Lambda's event limit the gateway refuses it,
    and no image appears."""
    layout = build_oci_layout(tmp_path / "src", [6 * MiB], tag="1.0")
    repo = unique("team/lambda/big")
    failed = skopeo.fails(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        layout.ref,
        ref(gateway_registry, repo, "1.0"),
        timeout=300,
    )
    assert "413" in failed.stderr or "too large" in failed.stderr.lower(), failed.stderr
    with gateway_registry.http() as http:
        assert http.get(f"/v2/{repo}/manifests/1.0").status_code == 404


def test_chunking_client_pushes_50_mib_and_pulls_it_back(gateway_registry) -> None:
    data = os.urandom(50 * MiB)
    repo = unique("team/lambda/chunked")
    with gateway_registry.http() as http:
        http.timeout = httpx.Timeout(120)
        digest = push_in_chunks(http, repo, data, chunk=4 * MiB)
        head = http.head(f"/v2/{repo}/blobs/{digest}")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        pulled = pull_by_redirect(http, repo, digest)
    assert hashlib.sha256(pulled).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
