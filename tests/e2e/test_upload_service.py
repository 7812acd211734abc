"""Real clients through the deployed topology with the upload service (issue 10):
`SKYPORT_GATEWAY=lambda SKYPORT_UPLOAD_SERVICE=on make run`, i.e. the Lambda handler
behind the local API Gateway (6 MiB events) and the upload service on a second port.

A started upload's Location names the upload service, with a capability; skopeo,
podman and docker (its own daemon) each push an image with a 300 MiB layer through it
(far past what one Lambda event can carry), and a multi-platform index, then pull them
back by redirect: digests (skopeo) and image IDs (docker, podman) compared. With auth
on, `docker login`, push and pull. A push whose capability was tampered with fails
with the OCI error and stores nothing.

The 300 MiB of randomness is made once per session; each client's layer is built from
it under another file name, so every client really uploads its own blob.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from machine import cannot_run

from .clients import Client, base_env, unique
from .conftest import (
    READY_TIMEOUT,
    REGISTRY_ENV,
    Registry,
    _free_port,
    _log_tail,
    _stop,
    _wait_ready,
    spawn_server,
)
from .images import MiB, build_docker_archive, build_oci_index_layout, build_oci_layout, read_oci_layout
from .test_docker import PUSHED, assert_gone, docker_inspect, fetch_manifest, podman_id
from .test_skopeo import assert_same_blobs, inspect_raw, pull, push, ref

pytestmark = pytest.mark.e2e

BIG = 300 * MiB
BIG_TRANSFER_TIMEOUT = 600.0
ADMIN_PASSWORD = "e2e-" + secrets.token_urlsafe(12)


def _start(request, tmp_path_factory, name: str, **env: str) -> Iterator[tuple[Registry, str]]:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(f"runs its own registry with the upload service, not the one {REGISTRY_ENV} names")
    port, upload_port = _free_port(), _free_port()
    base = tmp_path_factory.mktemp(name)
    log = base / "skyport.log"
    proc, argv, _ = spawn_server(
        request,
        port,
        log,
        SKYPORT_GATEWAY="lambda",
        SKYPORT_UPLOAD_SERVICE="on",
        SKYPORT_UPLOAD_PORT=str(upload_port),
        SKYPORT_STATE_DIR=str(base / "state"),
        **env,
    )
    reg = Registry(host=f"127.0.0.1:{port}", proc=proc, log=log)
    why = _wait_ready(reg, time.monotonic() + READY_TIMEOUT, auth=env.get("SKYPORT_AUTH") == "on")
    if why:
        _stop(proc, "the registry")
        pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
    try:
        yield reg, f"127.0.0.1:{upload_port}"
    finally:
        _stop(proc, "the registry")


@pytest.fixture(scope="module")
def topology(request, tmp_path_factory) -> Iterator[tuple[Registry, str]]:
    """(the registry, the upload service's host:port), auth off."""
    yield from _start(request, tmp_path_factory, "uploadsvc")


@pytest.fixture(scope="module")
def auth_topology(request, tmp_path_factory) -> Iterator[tuple[Registry, str]]:
    yield from _start(
        request, tmp_path_factory, "uploadsvc-auth", SKYPORT_AUTH="on", SKYPORT_ADMIN_PASSWORD=ADMIN_PASSWORD
    )


@pytest.fixture(scope="session")
def payload() -> bytes:
    """300 MiB of random bytes, made once: random so the layers do not compress."""
    return os.urandom(BIG)


def test_the_upload_location_names_the_upload_service(topology) -> None:
    registry, upload_host = topology
    with registry.http() as http:
        response = http.post("/v2/team/probe/blobs/uploads/")
    assert response.status_code == 202
    assert "apigw-requestid" in response.headers  # the Lambda handler answered the POST
    location = urlsplit(response.headers["Location"])
    assert location.netloc == upload_host and "_capability" in parse_qs(location.query)
    # No cap on chunks: the bytes go to the upload service, which has none.
    assert "OCI-Chunk-Max-Length" not in response.headers


def test_skopeo_pushes_a_300_mib_layer_and_an_index(
    skopeo: Client, topology, payload, tmp_path: Path
) -> None:
    registry, _ = topology
    layout = build_oci_layout(tmp_path / "src", [BIG, 32 * 1024], tag="1.0", payload=payload, first_index=10)
    repo = unique("team/uploadsvc/skopeo")
    push(skopeo, layout, ref(registry, repo, "1.0"))
    assert inspect_raw(skopeo, ref(registry, repo, "1.0")) == layout.raw
    pull(skopeo, ref(registry, repo, "1.0"), tmp_path / "back", "1.0")
    descriptor, manifest, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert descriptor["digest"] == layout.digest and manifest == layout.raw
    assert_same_blobs(layout, blobs)

    index = build_oci_index_layout(tmp_path / "index", layer_sizes=(8 * MiB, 4 * 1024), tag="multi")
    push(skopeo, index, ref(registry, repo, "multi"), "--all")
    assert inspect_raw(skopeo, ref(registry, repo, "multi")) == index.raw
    pull(skopeo, ref(registry, repo, "multi"), tmp_path / "index-back", "multi", "--all")
    descriptor, raw, blobs = read_oci_layout(tmp_path / "index-back", "multi")
    assert descriptor["digest"] == index.digest and raw == index.raw
    assert_same_blobs(index, blobs)


def test_docker_pushes_a_300_mib_layer_and_a_manifest_list(
    dockerd, topology, payload, tmp_path: Path
) -> None:
    registry, _ = topology
    docker = dockerd.client
    repo = unique("e2e/uploadsvc-docker")
    archive = build_docker_archive(
        tmp_path / "image.tar", [BIG], f"local/{repo}:src", payload=payload, first_index=20
    )
    docker("load", "-i", str(archive.path), timeout=BIG_TRANSFER_TIMEOUT)
    archive.path.unlink()
    target = f"{registry.host}/{repo}:1"
    docker("tag", archive.repo_tag, target)
    pushed = PUSHED.search(docker("push", target, timeout=BIG_TRANSFER_TIMEOUT).stdout)
    assert pushed, "docker push printed no digest"
    served, manifest = fetch_manifest(registry, repo, "1")
    assert served == pushed.group(1) and manifest["config"]["digest"] == archive.image_id
    docker("rmi", target, archive.repo_tag)
    assert_gone(docker, archive.image_id)
    docker("pull", target, timeout=BIG_TRANSFER_TIMEOUT)
    pulled = docker_inspect(docker, target)
    assert pulled["Id"] == archive.image_id and pulled["RootFS"]["Layers"] == archive.layer_diff_ids
    docker("rmi", target)

    ids = {}
    for arch in ("amd64", "arm64"):
        small = build_docker_archive(tmp_path / f"{arch}.tar", [7 * MiB], f"local/{repo}:{arch}", arch=arch)
        docker("load", "-i", str(small.path))
        docker("tag", small.repo_tag, f"{registry.host}/{repo}:{arch}")
        docker("push", f"{registry.host}/{repo}:{arch}", timeout=BIG_TRANSFER_TIMEOUT)
        docker("rmi", small.repo_tag, f"{registry.host}/{repo}:{arch}")
        ids[arch] = small.image_id
    listed = f"{registry.host}/{repo}:multi"
    docker(
        "manifest",
        "create",
        "--insecure",
        listed,
        f"{registry.host}/{repo}:amd64",
        f"{registry.host}/{repo}:arm64",
    )
    docker("manifest", "push", "--insecure", "--purge", listed, timeout=BIG_TRANSFER_TIMEOUT)
    for arch in ("arm64", "amd64"):
        docker("pull", "--platform", f"linux/{arch}", listed, timeout=BIG_TRANSFER_TIMEOUT)
        assert docker_inspect(docker, listed)["Id"] == ids[arch]
        docker("rmi", listed)


def test_podman_pushes_a_300_mib_layer_and_an_index(podman, topology, payload, tmp_path: Path) -> None:
    registry, _ = topology
    repo = unique("e2e/uploadsvc-podman")
    archive = build_docker_archive(
        tmp_path / "image.tar", [BIG], f"local/{repo}:src", payload=payload, first_index=30
    )
    podman("load", "-i", str(archive.path), timeout=BIG_TRANSFER_TIMEOUT)
    archive.path.unlink()
    local = archive.image_id.removeprefix("sha256:")
    target = f"{registry.host}/{repo}:1"
    podman("tag", local, target)
    podman("push", "--tls-verify=false", target, timeout=BIG_TRANSFER_TIMEOUT)
    _, manifest = fetch_manifest(registry, repo, "1")
    assert manifest["config"]["digest"] == archive.image_id
    podman("rmi", "--force", local)
    podman.fails("image", "inspect", local)
    podman("pull", "--tls-verify=false", target, timeout=BIG_TRANSFER_TIMEOUT)
    assert podman_id(podman, target) == archive.image_id

    # A multi-platform index: one small image per platform pushed, then a manifest list.
    ids = {}
    for arch in ("amd64", "arm64"):
        small = build_docker_archive(tmp_path / f"{arch}.tar", [7 * MiB], f"local/{repo}:{arch}", arch=arch)
        podman("load", "-i", str(small.path))
        pushed_as = f"{registry.host}/{repo}:{arch}"
        podman("tag", small.image_id.removeprefix("sha256:"), pushed_as)
        podman("push", "--tls-verify=false", pushed_as, timeout=BIG_TRANSFER_TIMEOUT)
        ids[arch] = small.image_id
    podman("manifest", "create", f"local/{repo}-list:multi")
    for arch in ids:
        podman(
            "manifest",
            "add",
            "--tls-verify=false",
            f"local/{repo}-list:multi",
            f"docker://{registry.host}/{repo}:{arch}",
        )
    listed = f"{registry.host}/{repo}:multi"
    podman(
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        f"local/{repo}-list:multi",
        f"docker://{listed}",
        timeout=BIG_TRANSFER_TIMEOUT,
    )
    _, served = fetch_manifest(registry, repo, "multi")
    assert {m["platform"]["architecture"] for m in served["manifests"]} == {"amd64", "arm64"}
    for arch, image_id in ids.items():
        podman("rmi", "--force", image_id.removeprefix("sha256:"))
        podman("pull", "--tls-verify=false", "--arch", arch, listed, timeout=BIG_TRANSFER_TIMEOUT)
        assert podman_id(podman, listed) == image_id
        podman("rmi", "--force", listed)


def test_docker_login_push_pull_with_auth_on(dockerd, auth_topology, tmp_path: Path) -> None:
    registry, _ = auth_topology
    docker = dockerd.client
    repo = unique("e2e/uploadsvc-auth")
    archive = build_docker_archive(tmp_path / "image.tar", [20 * MiB], f"local/{repo}:src")
    docker("load", "-i", str(archive.path))
    target = f"{registry.host}/{repo}:1"
    docker("tag", archive.repo_tag, target)
    docker.fails("push", target, timeout=BIG_TRANSFER_TIMEOUT)  # not logged in
    login = subprocess.run(
        [*docker.argv, "login", "-u", "admin", "--password-stdin", registry.host],
        env=docker.env,
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stdout + login.stderr
    try:
        docker("push", target, timeout=BIG_TRANSFER_TIMEOUT)
        docker("rmi", target, archive.repo_tag)
        assert_gone(docker, archive.image_id)
        docker("pull", target, timeout=BIG_TRANSFER_TIMEOUT)
        assert docker_inspect(docker, target)["Id"] == archive.image_id
        docker("rmi", target)
    finally:
        docker("logout", registry.host, check=False)


def test_a_tampered_capability_fails_cleanly_and_stores_nothing(topology) -> None:
    """A client whose Location was altered on the way (here: one MAC character) is
    refused by the upload service with the OCI error; the upload stays as it was and
    no blob appears. The genuine Location still works."""
    registry, _ = topology
    data = os.urandom(12 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = unique("team/uploadsvc/tampered")
    with registry.http() as http:
        http.timeout = httpx.Timeout(120)
        location = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        capability = parse_qs(urlsplit(location).query)["_capability"][0]
        flipped = capability[:-5] + ("A" if capability[-5] != "A" else "B") + capability[-4:]
        tampered = location.replace(capability, flipped)
        for method, url in (("PATCH", tampered), ("PUT", f"{tampered}&digest={digest}")):
            refused = http.request(method, url, content=data)
            assert refused.status_code == 401, refused.text
            assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
            assert capability not in refused.text and flipped not in refused.text
        assert http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
        status = http.get(location)
        assert status.status_code == 204 and status.headers["Range"] == "0-0"  # nothing was taken
        # The genuine capability completes the upload.
        patched = http.patch(location, content=data)
        assert patched.status_code == 202, patched.text
        done = http.put(f"{urljoin(location, patched.headers['Location'])}&digest={digest}")
        assert done.status_code == 201, done.text
        assert done.headers["Location"] == f"{registry.url}/v2/{repo}/blobs/{digest}"
        assert http.head(f"/v2/{repo}/blobs/{digest}").status_code == 200


@pytest.fixture(scope="module")
def image_environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Dockerfile installs, in a venv of the runtime's Python (python3.12, as the
    image and the function; else this one): requirements/upload-service.txt and then the
    project itself, not editable, so no source tree and no template.yaml lie beside it and
    nothing of the test or local-serving dependencies (moto, Mangum) is there."""
    import sys

    root = Path(__file__).resolve().parents[2]
    venv = tmp_path_factory.mktemp("upload-image") / "venv"
    python = os.environ.get("SKYPORT_RUNTIME_PYTHON") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    for what in (["-r", str(root / "requirements" / "upload-service.txt")], [str(root)]):
        done = subprocess.run([*pip, *what], capture_output=True, text=True, timeout=900)
        if done.returncode:
            pytest.fail(f"installing the image's environment failed:\n{done.stderr[-3000:]}")
    return venv


def test_serve_uploads_is_the_containers_command(
    image_environment: Path, settings, aws_clients, tmp_path: Path
) -> None:
    """`skyport serve-uploads` (the Dockerfile's CMD), installed as the image installs it,
    from the environment ECS gives it: the health check answers, a capability minted with
    its key opens an upload, anything else is refused; without a key it does not start."""
    from skyport.auth.capabilities import Capabilities, CapabilityKeys
    from skyport.registry import Registry as Storage

    storage = Storage(settings, clients=aws_clients)

    key = secrets.token_urlsafe(32)
    env = base_env(
        SKYPORT_BUCKET=settings.bucket,
        SKYPORT_TABLE=settings.table,
        AWS_REGION=settings.region,
        SKYPORT_S3_ENDPOINT=settings.s3_endpoint,
        SKYPORT_DYNAMODB_ENDPOINT=settings.dynamodb_endpoint,
        SKYPORT_REGISTRY_URL="https://registry.example.net",
        SKYPORT_AUTH="off",
    )
    env.pop("SKYPORT_UPLOAD_KEY", None)
    env.pop("PYTHONPATH", None)
    argv = [str(image_environment / "bin" / "skyport"), "serve-uploads", "--host", "127.0.0.1"]
    refused = subprocess.run(
        [*argv, "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "SKYPORT_UPLOAD_KEY" in refused.stderr, refused.stderr
    port = _free_port()
    log = tmp_path / "serve-uploads.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            env={**env, "SKYPORT_UPLOAD_KEY": key},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as http:
            while time.monotonic() < deadline:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                pytest.fail(f"serve-uploads did not start:\n{_log_tail(log)}")
            session = storage.uploads.start("team/app")
            capability = Capabilities(lambda: CapabilityKeys.from_value(key), False).mint(
                "team/app", session.upload_id, None, session.expires_at
            )
            path = f"/v2/team/app/blobs/uploads/{session.upload_id}"
            assert http.patch(path, content=b"x").status_code == 401
            assert http.patch(f"{path}?_capability={capability}", content=b"abc").status_code == 202
            done = http.put(
                f"{path}?_capability={capability}&digest=sha256:{hashlib.sha256(b'abc').hexdigest()}"
            )
            assert done.status_code == 201, done.text
            assert done.headers["Location"].startswith("https://registry.example.net/v2/team/app/blobs/")
            assert http.get("/v2/").status_code == 404
        assert capability not in log.read_text()
    finally:
        _stop(proc, "serve-uploads")
