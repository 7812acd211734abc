"""Real clients against a registry with auth on (`SKYPORT_AUTH=on make run`): skopeo and
docker log in, push and pull; a wrong password fails cleanly; a robot made with
`skyport robot add` pushes where it was granted and nowhere else; a public
repository is pulled anonymously.

The registry here is a second `skyport serve`, started by this module with
SKYPORT_AUTH=on and SKYPORT_ADMIN_PASSWORD (the session's `registry` is open), twice:
as `make run` serves it, and as deployed with the upload service (the Lambda gateway and
the upload service on a second port, issue 10), where every layer goes to the upload
host with a capability instead of the registry's credentials.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from machine import cannot_run

from .clients import TRANSFER_TIMEOUT, Client, unique
from .conftest import (
    READY_TIMEOUT,
    REGISTRY_ENV,
    TOPOLOGIES,
    _free_port,
    _log_tail,
    _stop,
    spawn_server,
)
from .images import MiB, build_docker_archive, build_oci_layout, read_oci_layout

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-" + secrets.token_urlsafe(12)
LAYERS = [6 * MiB, 32 * 1024]


@dataclass
class AuthRegistry:
    host: str
    env: dict[str, str]  # for `skyport` admin commands against it
    log: Path

    def skyport(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "skyport_cli", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(scope="module", params=["asgi", "uploadsvc"])
def auth_registry(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[AuthRegistry]:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(f"runs its own registry with auth on, not the one {REGISTRY_ENV} names")
    topology = dict(TOPOLOGIES[request.param])
    if topology.get("SKYPORT_UPLOAD_SERVICE") == "on":
        topology["SKYPORT_UPLOAD_PORT"] = str(_free_port())
    port = _free_port()
    base = tmp_path_factory.mktemp("auth-registry")
    log = base / "skyport.log"
    proc, _, env = spawn_server(
        request,
        port,
        log,
        SKYPORT_AUTH="on",
        SKYPORT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SKYPORT_STATE_DIR=str(base / "state"),
        **topology,
    )
    url = f"http://127.0.0.1:{port}"
    deadline, last = time.monotonic() + READY_TIMEOUT, "no answer"
    try:
        with httpx.Client(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                try:
                    response = http.get(f"{url}/v2/")
                    if response.status_code == 401 and "WWW-Authenticate" in response.headers:
                        break
                    last = f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.2)
            else:
                pytest.fail(f"the registry did not start ({last})\n{_log_tail(log)}", pytrace=False)
        if proc.poll() is not None:
            pytest.fail(f"the registry exited\n{_log_tail(log)}", pytrace=False)
        yield AuthRegistry(f"127.0.0.1:{port}", env, log)
    finally:
        _stop(proc, "the registry")


@pytest.fixture
def skopeo_auth(skopeo: Client, tmp_path: Path) -> Client:
    """skopeo with an auth file of its own (logins here must not leak into other tests)."""
    auth_file = tmp_path / "auth.json"
    auth_file.write_text("{}")
    return Client(skopeo.argv, {**skopeo.env, "REGISTRY_AUTH_FILE": str(auth_file)})


def test_banner_says_auth_is_on(auth_registry):
    text = _log_tail(auth_registry.log)
    assert "auth: on" in text and "admin user: admin" in text
    assert ADMIN_PASSWORD not in text  # given, not generated: never printed


def test_skopeo_login_copy_and_a_wrong_password(skopeo_auth: Client, auth_registry, tmp_path: Path):
    host = auth_registry.host
    failed = skopeo_auth.fails("login", "--tls-verify=false", "-u", "admin", "-p", "wrong-password", host)
    assert "invalid username/password" in failed.stderr or "unauthorized" in failed.stderr.lower(), (
        failed.stderr
    )
    assert ADMIN_PASSWORD not in failed.stderr

    repo = unique("e2e/auth-skopeo")
    layout = build_oci_layout(tmp_path / "src", LAYERS, tag="1.0")
    # Not logged in: refused.
    denied = skopeo_auth.fails(
        "copy",
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/{repo}:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower(), denied.stderr

    skopeo_auth("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, host)
    skopeo_auth(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/{repo}:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    skopeo_auth(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{host}/{repo}:1.0",
        f"oci:{tmp_path / 'back'}:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    _, raw, blobs = read_oci_layout(tmp_path / "back", "1.0")
    assert raw == layout.raw and set(layout.blobs) <= set(blobs)

    skopeo_auth("logout", host)
    skopeo_auth.fails("inspect", "--tls-verify=false", f"docker://{host}/{repo}:1.0")


def test_robot_pushes_where_granted_and_public_pulls_are_anonymous(
    skopeo_auth: Client, auth_registry, tmp_path: Path
):
    host = auth_registry.host
    team = unique("e2e-team")
    out = auth_registry.skyport("robot", "add", f"ci-{team}")
    secret = out.split("secret (shown once, store it in your CI's secrets): ")[1].split()[0]
    robot = f"robot+ci-{team}"
    auth_registry.skyport("grant", f"{team}/*", "push", "--to", robot)
    auth_registry.skyport("repo", "public", f"{team}/public-*")
    layout = build_oci_layout(tmp_path / "src", [32 * 1024], tag="v1")
    creds = f"--dest-creds={robot}:{secret}"
    skopeo_auth(
        "copy",
        creds,
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/{team}/app:v1",
        timeout=TRANSFER_TIMEOUT,
    )
    skopeo_auth(
        "copy",
        creds,
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/{team}/public-app:v1",
        timeout=TRANSFER_TIMEOUT,
    )
    refused = skopeo_auth.fails(
        "copy",
        creds,
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/elsewhere-{team}/app:v1",
        timeout=TRANSFER_TIMEOUT,
    )
    assert any(word in refused.stderr.lower() for word in ("denied", "forbidden", "unauthorized")), (
        refused.stderr
    )
    # Anonymous: the public repository yes, the private one no.
    skopeo_auth("inspect", "--tls-verify=false", f"docker://{host}/{team}/public-app:v1")
    skopeo_auth.fails("inspect", "--tls-verify=false", f"docker://{host}/{team}/app:v1")
    # Revoked: the secret stops working.
    auth_registry.skyport("robot", "revoke", f"ci-{team}")
    skopeo_auth.fails(
        "copy",
        creds,
        "--dest-tls-verify=false",
        layout.ref,
        f"docker://{host}/{team}/app:v2",
        timeout=TRANSFER_TIMEOUT,
    )


def test_docker_login_push_pull(dockerd, auth_registry, tmp_path: Path):
    docker, host = dockerd.client, auth_registry.host

    def login(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*docker.argv, "login", "-u", "admin", "--password-stdin", host],
            env=docker.env,
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    failed = login("wrong-password")
    assert failed.returncode != 0, failed.stdout
    assert "unauthorized" in failed.stderr.lower() or "invalid" in failed.stderr.lower(), failed.stderr
    succeeded = login(ADMIN_PASSWORD)
    assert succeeded.returncode == 0 and "Login Succeeded" in succeeded.stdout, (
        succeeded.stdout + succeeded.stderr
    )
    try:
        repo = unique("e2e/auth-docker")
        archive = build_docker_archive(tmp_path / "image.tar", LAYERS, f"local/{repo}:src")
        docker("load", "-i", str(archive.path), timeout=TRANSFER_TIMEOUT)
        target = f"{host}/{repo}:1"
        docker("tag", archive.repo_tag, target)
        docker("push", target, timeout=TRANSFER_TIMEOUT)
        docker("rmi", target, archive.repo_tag)
        docker("pull", target, timeout=TRANSFER_TIMEOUT)
        assert archive.image_id in docker("image", "inspect", "--format", "{{.Id}}", target).stdout
        docker("rmi", target)
    finally:
        docker("logout", host, check=False)
    refused = docker.fails("pull", target, timeout=TRANSFER_TIMEOUT)
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower(), refused.stderr
