"""End to end: the pull-through cache (issue 13) with real clients against a real upstream.

Skyport runs as `make run` starts it (``skyport serve``, its embedded moto on a port of
ours so that the tests can read its table and bucket), once serving the app itself and
once as deployed (``SKYPORT_GATEWAY=lambda``: the local API Gateway and the Lambda
handler; fills in threads of the process either way); the rules are added with the CLI
(``skyport cache add``), finding the server through its state file. The upstreams are
Distribution registries (tests/pull_through/upstream.py), each behind a counting proxy
that the rule names, seeded by the tests with images they build (no network):

* ``hub`` (``--mirror``) -> Distribution on its filesystem driver: blob GETs answer 200
  with the bytes, so Skyport's miss path redirects the client to the upstream's blob URL;
* ``mirrors/s3`` -> Distribution on S3 (moto) with redirects: blob GETs answer 307 to
  storage, which Skyport's miss path follows server-side;
* ``bad`` -> a filesystem upstream whose blob file the test corrupts;
* ``stale`` (a second server, tags re-checked after 1 s) -> an upstream the test stops.

"The second pull touches no upstream": the second pull starts once every blob is linked
in the cache (the async fills are done: read from the table), and the proxy must then see
no request at all, well within the tag re-check time (600 s here).

The servers run with ``--hooks off`` (the events pipeline is not under test here, and it
would share the machine's two cores with dockerd and podman).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from e2e.clients import TRANSFER_TIMEOUT, Client, unique
from e2e.conftest import (
    READY_TIMEOUT,
    REGISTRY_ENV,
    _free_port,
    _log_tail,
    _stop,
    _wait_ready,
    private_dockerd,
    spawn_server,
)
from e2e.conftest import Registry as Served
from e2e.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    OCILayout,
    build_oci_index_layout,
    build_oci_layout,
    host_arch,
    read_oci_layout,
)
from machine import cannot_run

from .upstream import Upstream, htpasswd_line, start_upstream

pytestmark = pytest.mark.e2e

RECHECK_SECONDS = 600  # the main server: no tag is re-checked during a test
STALE_RECHECK_SECONDS = 1  # the stale server: every tag is re-checked at its next pull
FILL_TIMEOUT = 90.0
TAG = "3.19"
ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
DOCKER_HUB_PREFIX = "hub"  # the --mirror rule
S3_PREFIX = "mirrors/s3"
BAD_PREFIX = "bad"


@dataclass
class Cache:
    """A running ``skyport serve``, its environment (for the CLI), and its storage."""

    served: Served
    env: dict[str, str]
    moto: str
    bucket: str
    table: str

    @property
    def host(self) -> str:
        return self.served.host

    def skyport(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "skyport_cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def add_rule(self, prefix: str, upstream: Upstream, *flags: str) -> None:
        added = self.skyport("cache", "add", prefix, upstream.url, *flags)
        assert added.returncode == 0, f"skyport cache add {prefix}: {added.stdout}{added.stderr}"

    def _client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.moto,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )

    def items(self) -> list[dict]:
        items = []
        for page in self._client("dynamodb").get_paginator("scan").paginate(TableName=self.table):
            items.extend(page["Items"])
        return items

    def linked_in(self, digest: str) -> set[str]:
        """The repositories holding a link to ``digest`` (keys.blob_link)."""
        return {
            item["PK"]["S"].removeprefix("REPO#")
            for item in self.items()
            if item["PK"]["S"].startswith("REPO#") and item["SK"]["S"] == f"BLOB#{digest}"
        }

    def blob_record(self, digest: str) -> dict | None:
        found = [i for i in self.items() if i["PK"]["S"] == f"BLOB#{digest}" and i["SK"]["S"] == "META"]
        return found[0] if found else None

    def objects(self) -> dict[str, bytes]:
        s3 = self._client("s3")
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for entry in page.get("Contents", []):
                out[entry["Key"]] = s3.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
        return out

    def open_multipart_uploads(self) -> list[dict]:
        return self._client("s3").list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def wait_filled(self, digests: list[str], repository: str | None = None) -> None:
        """Wait until every blob is linked (in ``repository``, or in any one when None: the
        mirror's storage is the cache's choice): the asynchronous fills are done."""
        deadline = time.monotonic() + FILL_TIMEOUT
        missing = list(digests)
        while time.monotonic() < deadline:
            missing = [
                d
                for d in digests
                if not (repository in self.linked_in(d) if repository else self.linked_in(d))
            ]
            if not missing:
                return
            time.sleep(0.5)
        pytest.fail(
            f"not filled after {FILL_TIMEOUT:.0f}s (no link in {repository or 'any repository'}): "
            f"{missing}\n--- skyport log ---\n{_log_tail(self.served.log)}",
            pytrace=False,
        )


def start_cache(
    request: pytest.FixtureRequest, base: Path, recheck_seconds: int, gateway: str, **extra: str
) -> tuple[Cache, object]:
    """``skyport serve`` as `make run` starts it (``gateway``: the app itself, or as deployed
    behind the local API Gateway and the Lambda handler), its embedded moto on a known port;
    ``extra``: more of its environment (auth)."""
    port, moto_port = _free_port(), _free_port()
    log = base / "skyport.log"
    proc, argv, env = spawn_server(
        request,
        port,
        log,
        SKYPORT_STATE_DIR=str(base / "state"),
        SKYPORT_MOTO_PORT=str(moto_port),
        SKYPORT_BUCKET="cache-blobs",
        SKYPORT_TABLE="cache-metadata",
        SKYPORT_HOOKS="off",
        SKYPORT_GATEWAY=gateway,
        SKYPORT_CACHE_TAG_RECHECK_SECONDS=str(recheck_seconds),
        **extra,
    )
    served = Served(host=f"127.0.0.1:{port}", proc=proc, log=log)
    why = _wait_ready(served, time.monotonic() + READY_TIMEOUT, auth=extra.get("SKYPORT_AUTH") == "on")
    if why:
        _stop(proc, "the registry")
        pytest.fail(f"`{' '.join(argv)}` did not start: {why}\n{_log_tail(log)}", pytrace=False)
    cache = Cache(served, env, f"http://127.0.0.1:{moto_port}", "cache-blobs", "cache-metadata")
    return cache, proc


def _own_servers_only() -> None:
    if os.environ.get(REGISTRY_ENV):
        cannot_run(f"runs its own registry and upstreams, not the one {REGISTRY_ENV} names")
    if shutil.which("docker-registry") is None:
        cannot_run(
            "docker-registry (Distribution, the upstream) not installed; "
            "run scripts/install-system-deps.sh or bench/setup.sh as root"
        )


# As make run serves it, and as deployed (SKYPORT_GATEWAY=lambda): through the local API
# Gateway and the Lambda handler, fills still in the process (no fill function configured).
GATEWAYS = ["asgi", "lambda"]


@pytest.fixture(scope="module", params=GATEWAYS)
def served_cache(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Cache]:
    _own_servers_only()
    cache, proc = start_cache(request, tmp_path_factory.mktemp("cache"), RECHECK_SECONDS, request.param)
    try:
        yield cache
    finally:
        _stop(proc, "the registry")


@pytest.fixture(scope="module")
def upstreams(served_cache: Cache, tmp_path_factory) -> Iterator[dict[str, Upstream]]:
    """The main server's upstreams, each with its rule (added before any pull)."""
    base = tmp_path_factory.mktemp("upstreams")
    started: dict[str, Upstream] = {}
    try:
        started["fs"] = start_upstream(base / "fs", "fs")
        started["s3"] = start_upstream(base / "s3", "s3", s3_endpoint=served_cache.moto)
        started["bad"] = start_upstream(base / "bad", "fs")
        served_cache.add_rule(DOCKER_HUB_PREFIX, started["fs"], "--mirror")
        served_cache.add_rule(S3_PREFIX, started["s3"])
        served_cache.add_rule(BAD_PREFIX, started["bad"])
        yield started
    finally:
        for upstream in started.values():
            upstream.stop()


PREFIXES = {"fs": DOCKER_HUB_PREFIX, "s3": S3_PREFIX}
# Behind S3, a layer of three parts of the default 8 MiB part size: the fill streams it
# into an S3 multipart upload.
LAYERS = {"fs": [300 * 1024, 40 * 1024], "s3": [17 * 1024 * 1024, 40 * 1024]}


def seed(skopeo: Client, upstream: Upstream, name: str, tmp: Path, sizes: list[int]) -> OCILayout:
    """Push a new image to the upstream itself (not through its proxy: not counted)."""
    layout = build_oci_layout(tmp / f"seed-{name.replace('/', '-')}", sizes, tag=TAG)
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--retry-times=0",
        layout.ref,
        f"docker://{upstream.direct_host}/{name}:{TAG}",
        timeout=TRANSFER_TIMEOUT,
    )
    return layout


def blob_digests(layout: OCILayout) -> list[str]:
    """The blobs of the image (config and layers), not its manifest."""
    return sorted(d for d in layout.blobs if d != layout.digest)


def pull(skopeo: Client, reference: str, into: Path) -> None:
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--retry-times=0",
        f"docker://{reference}",
        f"oci:{into}:{TAG}",
        timeout=TRANSFER_TIMEOUT,
    )


def assert_same_image(pulled: Path, layout: OCILayout) -> None:
    descriptor, raw, blobs = read_oci_layout(pulled, TAG)
    assert descriptor["digest"] == layout.digest
    assert raw == layout.raw
    assert {digest: len(data) for digest, data in blobs.items()} == layout.blobs


def upstream_saw(upstream: Upstream, name: str) -> list[tuple[str, str]]:
    return [r for r in upstream.requests() if r[1].startswith(f"/v2/{name}/")]


# --------------------------------------------------------------------------- skopeo, podman


@pytest.mark.parametrize("kind", ["fs", "s3"])
def test_skopeo_pulls_through_the_cache_and_again_without_upstream(
    skopeo: Client, served_cache: Cache, upstreams: dict[str, Upstream], kind: str, tmp_path: Path
) -> None:
    upstream = upstreams[kind]
    name = unique("library/alpine")
    layout = seed(skopeo, upstream, name, tmp_path, LAYERS[kind])
    local = f"{PREFIXES[kind]}/{name}"

    upstream.proxy.reset()
    pull(skopeo, f"{served_cache.host}/{local}:{TAG}", tmp_path / "first")
    assert_same_image(tmp_path / "first", layout)
    assert any("/manifests/" in path for _, path in upstream_saw(upstream, name)), upstream.requests()

    served_cache.wait_filled(blob_digests(layout), local)
    upstream.proxy.reset()
    pull(skopeo, f"{served_cache.host}/{local}:{TAG}", tmp_path / "second")
    assert_same_image(tmp_path / "second", layout)
    assert upstream.requests() == [], "the second pull reached the upstream"
    # And by digest: immutable, never asked upstream again.
    pull(skopeo, f"{served_cache.host}/{local}@{layout.digest}", tmp_path / "by-digest")
    assert upstream.requests() == []


def test_podman_pulls_through_the_cache_and_again_without_upstream(
    podman: Client, skopeo: Client, served_cache: Cache, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    upstream = upstreams["s3"]
    name = unique("library/busybox")
    layout = seed(skopeo, upstream, name, tmp_path, [200 * 1024, 30 * 1024])
    reference = f"{served_cache.host}/{S3_PREFIX}/{name}:{TAG}"

    upstream.proxy.reset()
    podman("pull", "--tls-verify=false", reference, timeout=TRANSFER_TIMEOUT)
    assert podman("image", "inspect", "--format", "{{.Digest}}", reference).stdout.strip() == layout.digest
    assert upstream_saw(upstream, name), upstream.requests()

    served_cache.wait_filled(blob_digests(layout), f"{S3_PREFIX}/{name}")
    podman("rmi", reference)
    upstream.proxy.reset()
    podman("pull", "--tls-verify=false", reference, timeout=TRANSFER_TIMEOUT)
    assert podman("image", "inspect", "--format", "{{.Digest}}", reference).stdout.strip() == layout.digest
    assert upstream.requests() == [], "the second pull reached the upstream"
    podman("rmi", reference)


# --------------------------------------------------------------------------- docker, as a mirror


@pytest.fixture(scope="module")
def mirrored_dockerd(served_cache: Cache) -> Iterator[Client]:
    """A private dockerd whose daemon.json names the cache as its Docker Hub mirror (plain
    http on loopback: also an insecure registry). Its own daemon: the session's dockerd
    was started before the cache's port was known."""
    config = {"registry-mirrors": [f"http://{served_cache.host}"], "insecure-registries": [served_cache.host]}
    with private_dockerd(prefix="skyport-mirror-", daemon_config=config) as docker:
        yield docker.client


def test_docker_pulls_docker_hub_names_through_the_mirror_rule(
    mirrored_dockerd: Client,
    skopeo: Client,
    served_cache: Cache,
    upstreams: dict[str, Upstream],
    tmp_path: Path,
) -> None:
    """As Docker Hub's official images are: a multi-platform index, of which dockerd pulls
    the host's platform (the cache fetches that child manifest by digest)."""
    docker = mirrored_dockerd
    upstream = upstreams["fs"]  # the --mirror rule's upstream
    short = unique("alpine")
    name = f"library/{short}"  # what dockerd asks a mirror for `docker pull alpine-...`
    other = "arm64" if host_arch() != "arm64" else "amd64"
    layout = build_oci_index_layout(
        tmp_path / "seed-index", platforms=(("linux", host_arch()), ("linux", other)), tag=TAG
    )
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--retry-times=0",
        layout.ref,
        f"docker://{upstream.direct_host}/{name}:{TAG}",
        timeout=TRANSFER_TIMEOUT,
    )
    child = layout.platforms[f"linux/{host_arch()}"]
    child_manifest = json.loads((layout.path / "blobs" / "sha256" / child.split(":", 1)[1]).read_bytes())
    config_digest = child_manifest["config"]["digest"]
    host_blobs = [config_digest, *(layer["digest"] for layer in child_manifest["layers"])]
    reference = f"{short}:{TAG}"

    upstream.proxy.reset()
    docker("pull", reference, timeout=TRANSFER_TIMEOUT)
    image = json.loads(docker("image", "inspect", reference).stdout)[0]
    assert image["Id"] == config_digest
    assert f"{short}@{layout.digest}" in image["RepoDigests"], image["RepoDigests"]
    # It came from the mirror rule's upstream, through Skyport (dockerd cannot reach Docker Hub).
    assert any("/manifests/" in path for _, path in upstream_saw(upstream, name)), upstream.requests()

    # Mirrored content is kept under the mirror rule's prefix: one copy for both ways of
    # asking (skyport/pull_through/rules.py).
    served_cache.wait_filled(host_blobs, f"{DOCKER_HUB_PREFIX}/{name}")
    docker("rmi", reference)
    upstream.proxy.reset()
    docker("pull", reference, timeout=TRANSFER_TIMEOUT)
    image = json.loads(docker("image", "inspect", reference).stdout)[0]
    assert image["Id"] == config_digest
    assert upstream.requests() == [], "the second pull reached the upstream"
    docker("rmi", reference)
    # The same copy, asked for by its prefixed name: still no upstream.
    prefixed = f"docker://{served_cache.host}/{DOCKER_HUB_PREFIX}/{name}:{TAG}"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", prefixed).stdout.encode()
    assert raw == layout.raw
    assert upstream.requests() == [], "the prefixed name reached the upstream"


# --------------------------------------------------------------------------- upstream stopped


@pytest.fixture(params=GATEWAYS)
def stale_cache(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple[Cache, Upstream]]:
    """A second server whose tags are re-checked after a second, and its own upstream."""
    _own_servers_only()
    base = tmp_path_factory.mktemp("stale")
    cache, proc = start_cache(request, base, STALE_RECHECK_SECONDS, request.param)
    upstream = None
    try:
        upstream = start_upstream(base / "upstream", "fs")
        cache.add_rule("stale", upstream)
        yield cache, upstream
    finally:
        if upstream is not None:
            upstream.stop()
        _stop(proc, "the registry")


def test_cached_tags_still_pull_with_the_upstream_stopped(
    skopeo: Client, stale_cache: tuple[Cache, Upstream], tmp_path: Path
) -> None:
    cache, upstream = stale_cache
    name = unique("library/nginx")
    layout = seed(skopeo, upstream, name, tmp_path, [150 * 1024, 10 * 1024])
    local = f"stale/{name}"
    pull(skopeo, f"{cache.host}/{local}:{TAG}", tmp_path / "first")
    cache.wait_filled(blob_digests(layout), local)

    upstream.stop()
    time.sleep(STALE_RECHECK_SECONDS + 0.5)  # the tag is due for its re-check, which fails
    pull(skopeo, f"{cache.host}/{local}:{TAG}", tmp_path / "offline")
    assert_same_image(tmp_path / "offline", layout)

    with httpx.Client(base_url=f"http://{cache.host}", trust_env=False, timeout=30) as http:
        response = http.get(f"/v2/{local}/manifests/{TAG}", headers={"Accept": ACCEPT})
        # A tag never cached cannot be served: a clear OCI error, to be retried later.
        never = http.get(f"/v2/stale/{unique('library/never')}/manifests/{TAG}", headers={"Accept": ACCEPT})
    assert never.status_code == 503, never.text
    assert never.json()["errors"][0]["code"] == "UNAVAILABLE", never.text
    assert never.headers.get("Retry-After", "").isdigit(), dict(never.headers)
    assert response.status_code == 200, response.text
    assert response.content == layout.raw
    assert response.headers.get("Docker-Content-Digest") == layout.digest
    warning = response.headers.get("Warning", "")
    assert warning.startswith("110 "), (
        f"no RFC 7234 stale warning: {dict(response.headers)}\n{_log_tail(cache.served.log)}"
    )


# --------------------------------------------------------------------------- corrupted upstream blob


def test_a_corrupted_upstream_blob_is_refused_and_never_stored(
    skopeo: Client, served_cache: Cache, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    upstream = upstreams["bad"]
    name = unique("library/redis")
    layout = seed(skopeo, upstream, name, tmp_path, [120 * 1024])
    manifest = json.loads(layout.raw)
    config_digest = manifest["config"]["digest"]
    bad = manifest["layers"][0]["digest"]
    data = upstream.blob_data(bad)
    original = data.read_bytes()
    corrupted = bytearray(original)
    middle = len(corrupted) // 2
    corrupted[middle : middle + 16] = bytes(b ^ 0xFF for b in corrupted[middle : middle + 16])
    data.write_bytes(bytes(corrupted))  # same size: only the digest tells
    local = f"{BAD_PREFIX}/{name}"

    refused = skopeo.fails(
        "copy",
        "--src-tls-verify=false",
        "--retry-times=0",
        f"docker://{served_cache.host}/{local}:{TAG}",
        f"oci:{tmp_path / 'pulled'}:{TAG}",
        timeout=TRANSFER_TIMEOUT,
    )
    assert "digest" in refused.stderr.lower(), refused.stderr

    # The miss started a fill of the corrupted blob, which must end by refusing it (the
    # server logs the refusal, naming the digest); the config's fill (asked for here) shows
    # that fills do run and store beside it.
    with httpx.Client(trust_env=False, timeout=30, follow_redirects=True) as http:
        config = http.get(f"http://{served_cache.host}/v2/{local}/blobs/{config_digest}")
    assert config.status_code == 200 and hashlib.sha256(config.content).hexdigest() == config_digest[7:]
    served_cache.wait_filled([config_digest], local)
    deadline = time.monotonic() + FILL_TIMEOUT
    while time.monotonic() < deadline and bad not in _log_tail(served_cache.served.log, max_bytes=200_000):
        time.sleep(0.5)
    log = _log_tail(served_cache.served.log, max_bytes=200_000)
    assert bad in log, f"no fill of the corrupted blob ended (the server never named it)\n{log[-20_000:]}"

    assert served_cache.linked_in(bad) == set()
    assert served_cache.blob_record(bad) is None
    assert served_cache.open_multipart_uploads() == []
    bad_sha = hashlib.sha256(corrupted).hexdigest()
    stored = {key: hashlib.sha256(body).hexdigest() for key, body in served_cache.objects().items()}
    assert bad_sha not in stored.values() and bad[7:] not in stored.values(), stored
    # Asked again, Skyport still never serves bytes of its own for it.
    with httpx.Client(trust_env=False, timeout=30) as http:
        again = http.get(f"http://{served_cache.host}/v2/{local}/blobs/{bad}")
    assert again.status_code != 200 or hashlib.sha256(again.content).hexdigest() != bad_sha
    assert served_cache.blob_record(bad) is None


# --------------------------------------------------------------------------- auth


ADMIN_PASSWORD = "e2e-" + secrets.token_urlsafe(12)


@pytest.fixture(params=GATEWAYS)
def auth_cache(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple[Cache, Upstream]]:
    """A server with auth on (`SKYPORT_AUTH=on make run`), a rule ``hub`` and its upstream."""
    _own_servers_only()
    base = tmp_path_factory.mktemp("auth")
    cache, proc = start_cache(
        request,
        base,
        RECHECK_SECONDS,
        request.param,
        SKYPORT_AUTH="on",
        SKYPORT_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    upstream = None
    try:
        upstream = start_upstream(base / "upstream", "fs")
        cache.add_rule(DOCKER_HUB_PREFIX, upstream)
        yield cache, upstream
    finally:
        if upstream is not None:
            upstream.stop()
        _stop(proc, "the registry")


def _robot(cache: Cache, name: str, pattern: str) -> str:
    """A robot with pull on ``pattern``; returns skopeo's ``USER:SECRET``."""
    added = cache.skyport("robot", "add", name)
    assert added.returncode == 0, added.stdout + added.stderr
    secret = added.stdout.split("secret (shown once, store it in your CI's secrets): ")[1].split()[0]
    granted = cache.skyport("grant", pattern, "pull", "--to", f"robot+{name}")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    return f"robot+{name}:{secret}"


def test_pulling_through_the_cache_needs_pull_on_the_local_prefix(
    skopeo: Client, auth_cache: tuple[Cache, Upstream], tmp_path: Path
) -> None:
    cache, upstream = auth_cache
    name = unique("library/postgres")
    layout = seed(skopeo, upstream, name, tmp_path, [50 * 1024])
    local = f"{DOCKER_HUB_PREFIX}/{name}"
    puller = _robot(cache, unique("puller"), f"{DOCKER_HUB_PREFIX}/*")
    outsider = _robot(cache, unique("outsider"), "team/*")

    def copy(*creds: str, into: str) -> subprocess.CompletedProcess[str]:
        return skopeo(
            "copy",
            *creds,
            "--src-tls-verify=false",
            "--retry-times=0",
            f"docker://{cache.host}/{local}:{TAG}",
            f"oci:{tmp_path / into}:{TAG}",
            timeout=TRANSFER_TIMEOUT,
            check=False,
        )

    upstream.proxy.reset()
    anonymous = copy(into="anonymous")
    assert anonymous.returncode != 0
    assert any(w in anonymous.stderr.lower() for w in ("unauthorized", "denied")), anonymous.stderr
    refused = copy(f"--src-creds={outsider}", into="outsider")
    assert refused.returncode != 0
    assert any(w in refused.stderr.lower() for w in ("unauthorized", "denied")), refused.stderr
    # A caller without pull on the prefix never makes the cache spend an upstream request.
    assert upstream_saw(upstream, name) == [], upstream.requests()

    pulled = copy(f"--src-creds={puller}", into="puller")
    assert pulled.returncode == 0, pulled.stderr
    assert_same_image(tmp_path / "puller", layout)
    assert upstream_saw(upstream, name), upstream.requests()
    assert puller.split(":", 1)[1] not in _log_tail(cache.served.log, max_bytes=200_000)


# --------------------------------------------------------------------------- upstream credentials

UPSTREAM_USER = "e2e-mirror"
UPSTREAM_PASSWORD = "e2e-" + secrets.token_urlsafe(16)
PASSWORD_ENV = "SKYPORT_E2E_UPSTREAM_PASSWORD"


@pytest.fixture(params=GATEWAYS)
def private_cache(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple[Cache, Upstream]]:
    """A server started with the upstream's password in ``PASSWORD_ENV`` (`make run` reads
    the rule's variable when it calls upstream), a rule ``private`` naming that variable, and
    a Distribution upstream (filesystem driver: it serves blob bytes itself) that requires
    those credentials."""
    _own_servers_only()
    line = htpasswd_line(UPSTREAM_USER, UPSTREAM_PASSWORD)
    if line is None:
        cannot_run("no bcrypt in this Python (crypt module) for Distribution's htpasswd file")
    base = tmp_path_factory.mktemp("private")
    cache, proc = start_cache(
        request, base, RECHECK_SECONDS, request.param, **{PASSWORD_ENV: UPSTREAM_PASSWORD}
    )
    upstream = None
    try:
        upstream = start_upstream(base / "upstream", "fs", htpasswd=line)
        cache.add_rule("private", upstream, "--username", UPSTREAM_USER, "--password-env", PASSWORD_ENV)
        yield cache, upstream
    finally:
        if upstream is not None:
            upstream.stop()
        _stop(proc, "the registry")


def test_an_upstream_with_credentials_serving_bytes_itself_is_filled_then_redirected_to_s3(
    skopeo: Client, private_cache: tuple[Cache, Upstream], tmp_path: Path
) -> None:
    """Case (c): the client cannot be sent upstream (it has no credentials, and ours are never
    handed out), so a small blob's miss waits for the fill and redirects to Skyport's S3."""
    cache, upstream = private_cache
    name = unique("library/private")
    layout = build_oci_layout(tmp_path / "seed", [64 * 1024, 8 * 1024], tag=TAG)
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        f"--dest-creds={UPSTREAM_USER}:{UPSTREAM_PASSWORD}",
        layout.ref,
        f"docker://{upstream.direct_host}/{name}:{TAG}",
        timeout=TRANSFER_TIMEOUT,
    )
    local = f"private/{name}"
    listed = cache.skyport("cache", "list", "--json")
    assert listed.returncode == 0 and UPSTREAM_PASSWORD not in listed.stdout + listed.stderr

    # The client has no upstream credentials: it pulls only because nothing sends it upstream.
    pull(skopeo, f"{cache.host}/{local}:{TAG}", tmp_path / "first")
    assert_same_image(tmp_path / "first", layout)
    layer = json.loads(layout.raw)["layers"][0]["digest"]
    with httpx.Client(trust_env=False, timeout=30) as http:
        response = http.get(f"http://{cache.host}/v2/{local}/blobs/{layer}")
    assert response.status_code == 307, response.text
    location = response.headers["Location"]
    assert upstream.host not in location and upstream.direct_host not in location, location
    assert UPSTREAM_PASSWORD not in location and UPSTREAM_USER not in location, location
    assert UPSTREAM_PASSWORD not in _log_tail(cache.served.log, max_bytes=500_000)

    cache.wait_filled(blob_digests(layout), local)
    upstream.proxy.reset()
    pull(skopeo, f"{cache.host}/{local}:{TAG}", tmp_path / "second")
    assert_same_image(tmp_path / "second", layout)
    assert upstream.requests() == [], "the second pull reached the upstream"
