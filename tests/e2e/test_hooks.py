"""Hooks end to end (issue 11, "Locally"): two Skyport instances as `make run` serves them
(separate ports, buckets, tables and state directories), both on one standalone moto server
(`skyport moto`) that outlives them, each running the hooks pipeline as deployed (--hooks on).

A rule on A replicates to B over the distribution API. skopeo pushes a multi-platform image
to A, and within seconds B serves the same digests to skopeo; a tag moved on A moves on B; a
webhook receiver subscribed on A gets Distribution's envelope with a valid signature; a
delete on A under a rule with --deletes removes the image from B, under one without it does
not; B stopped while A takes pushes, then started again on the same storage, loses nothing
(A's replication events wait in its queue with backoff, then drain). A rule to Debian's
Distribution (`docker-registry`) replicates there too.

The tests share the servers and run in order (the last one stops and restarts B).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hook_receiver import HookReceiver, hook_receiver

from .clients import TRANSFER_TIMEOUT, Client, base_env, run
from .conftest import READY_TIMEOUT, _log_tail, _stop, _wait_ready
from .images import OCILayout, build_oci_index_layout, build_oci_layout, sha256_digest

pytestmark = pytest.mark.e2e

REPLICATION_WITHIN = 30.0  # seconds: "within seconds", with room for a loaded 2-core machine
WEBHOOK_SECRET = "e2e-hooks-signing-secret-0123456789"
# A fast backoff, and attempts enough to outlast B's downtime without parking anything.
HOOK_ENV = {
    "SKYPORT_HOOK_BACKOFF_SECONDS": "1",
    "SKYPORT_HOOK_BACKOFF_CAP_SECONDS": "2",
    "SKYPORT_HOOK_MAX_ATTEMPTS": "60",
}
DELETES, KEEPS = "hooks-del", "hooks-keep"  # repository prefixes of the two rules
OCI_ACCEPT = ",".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python_env(request: pytest.FixtureRequest, **extra: str) -> dict[str, str]:
    """The environment of a `python -m skyport_cli` subprocess: pytest's import roots."""
    roots = [str(p) for p in request.config.getini("pythonpath")]
    inherited = os.environ.get("PYTHONPATH")
    return base_env(PYTHONPATH=os.pathsep.join(roots + ([inherited] if inherited else [])), **extra)


@dataclass
class Instance:
    """One local Skyport: `skyport serve` with its own port, bucket, table and state dir."""

    name: str
    port: int
    state: Path
    log: Path
    env: dict[str, str]
    argv: list[str]
    cwd: Path
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        why = _wait_ready(self, time.monotonic() + READY_TIMEOUT)
        if why:
            self.stop()
            pytest.fail(f"Skyport {self.name} did not start: {why}\n{_log_tail(self.log)}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, f"Skyport {self.name}")
            self.proc = None

    def skyport(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """The `skyport` CLI in this instance's state directory (it finds the server there)."""
        return run([sys.executable, "-m", "skyport_cli", *args], env={**self.env, **extra_env})

    def manifest(self, repository: str, reference: str) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=10) as http:
            return http.get(
                f"{self.url}/v2/{repository}/manifests/{reference}", headers={"Accept": OCI_ACCEPT}
            )


@dataclass
class Pair:
    a: Instance
    b: Instance
    receiver: HookReceiver
    moto: str


@pytest.fixture(scope="module")
def moto_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`skyport moto` on a free port: the storage both instances share and outlive."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    argv = [sys.executable, "-m", "skyport_cli", "moto", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=_python_env(request),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc, "skyport moto")
                pytest.fail(f"`skyport moto` did not start:\n{_log_tail(log)}", pytrace=False)
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _stop(proc, "skyport moto")


def _instance(request, tmp_path_factory, moto: str, name: str) -> Instance:
    base = tmp_path_factory.mktemp(f"skyport-{name}")
    port = _free_port()
    env = _python_env(
        request,
        SKYPORT_STATE_DIR=str(base / "state"),
        SKYPORT_S3_ENDPOINT=moto,
        SKYPORT_DYNAMODB_ENDPOINT=moto,
        SKYPORT_BUCKET=f"hooks-{name}-{port}",
        SKYPORT_TABLE=f"hooks-{name}-{port}",
        SKYPORT_HOOKS="on",
        AWS_ACCESS_KEY_ID="skyport-local",
        AWS_SECRET_ACCESS_KEY="skyport-local",
        **HOOK_ENV,
    )
    argv = [sys.executable, "-m", "skyport_cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Instance(name, port, base / "state", base / "skyport.log", env, argv, request.config.rootpath)


@pytest.fixture(scope="module")
def pair(request, tmp_path_factory, moto_server: str) -> Iterator[Pair]:
    a = _instance(request, tmp_path_factory, moto_server, "a")
    b = _instance(request, tmp_path_factory, moto_server, "b")
    with hook_receiver() as receiver:
        try:
            a.start()
            b.start()
            a.skyport("replication", "add", f"{DELETES}/*", "--to", b.url, "--insecure", "--deletes")
            a.skyport("replication", "add", f"{KEEPS}/*", "--to", b.url, "--insecure")
            a.skyport(
                "webhook", "add", receiver.url, "--secret-env", "HOOK_SECRET", HOOK_SECRET=WEBHOOK_SECRET
            )
            yield Pair(a, b, receiver, moto_server)
        except BaseException:
            for instance in (a, b):
                print(f"--- Skyport {instance.name} log ---\n{_log_tail(instance.log)}")
            raise
        finally:
            a.stop()
            b.stop()


def push(skopeo: Client, layout: OCILayout, instance: Instance, repository: str, *flags: str) -> None:
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *flags,
        layout.ref,
        f"docker://{instance.host}/{repository}:{layout.tag}",
        timeout=TRANSFER_TIMEOUT,
    )


def inspect_raw(skopeo: Client, instance: Instance, repository: str, reference: str) -> bytes:
    separator = "@" if reference.startswith("sha256:") else ":"
    image = f"docker://{instance.host}/{repository}{separator}{reference}"
    return skopeo("inspect", "--raw", "--tls-verify=false", image).stdout.encode()


def wait_until(what: str, condition, timeout: float = REPLICATION_WITHIN, pair: Pair | None = None) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout`` with the servers' logs."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    logs = ""
    if pair is not None:
        logs = _queue_depths(pair)
        logs += "".join(
            f"\n--- Skyport {i.name} log ---\n{_log_tail(i.log, max_bytes=6000)}" for i in (pair.a, pair.b)
        )
    raise AssertionError(f"{what}: not within {timeout:.0f}s{logs}")


def _queue_depths(pair: Pair) -> str:
    """Where events wait, for a failure's report: every queue on the shared moto."""
    import boto3

    sqs = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=pair.moto,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    lines = []
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        visible, hidden = (
            attributes["ApproximateNumberOfMessages"],
            attributes["ApproximateNumberOfMessagesNotVisible"],
        )
        lines.append(f"{url.rsplit('/', 1)[-1]}: {visible} visible, {hidden} in flight")
    return "\n--- queues ---\n" + "\n".join(lines)


def digest_on(instance: Instance, repository: str, reference: str) -> str | None:
    response = instance.manifest(repository, reference)
    return sha256_digest(response.content) if response.status_code == 200 else None


def test_a_multi_platform_push_to_a_is_served_by_b_with_the_same_digests(pair, skopeo, tmp_path):
    layout = build_oci_index_layout(tmp_path / "index", tag="1.0")
    repository = f"{DELETES}/multi"
    push(skopeo, layout, pair.a, repository, "--all")
    took = wait_until(
        "B serves the index", lambda: digest_on(pair.b, repository, "1.0") == layout.digest, pair=pair
    )
    # B serves skopeo the same bytes: the index by tag, each platform's manifest by digest.
    assert inspect_raw(skopeo, pair.b, repository, "1.0") == layout.raw
    for platform, digest in layout.platforms.items():
        assert sha256_digest(inspect_raw(skopeo, pair.b, repository, digest)) == digest, platform
    pulled = tmp_path / "from-b"
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{pair.b.host}/{repository}:1.0",
        f"oci:{pulled}:1.0",
        timeout=TRANSFER_TIMEOUT,
    )
    on_b = {f"sha256:{blob.name}" for blob in (pulled / "blobs" / "sha256").iterdir()}
    assert set(layout.blobs) <= on_b, "blobs B does not serve"
    print(f"replicated a multi-platform image in {took:.1f}s")


def test_a_tag_moved_on_a_moves_on_b(pair, skopeo, tmp_path):
    repository = f"{DELETES}/moving"
    first = build_oci_layout(tmp_path / "first", [16 * 1024], tag="stable")
    second = build_oci_layout(tmp_path / "second", [24 * 1024], tag="stable")
    push(skopeo, first, pair.a, repository)
    wait_until("B has the first", lambda: digest_on(pair.b, repository, "stable") == first.digest, pair=pair)
    push(skopeo, second, pair.a, repository)
    wait_until(
        "the tag moves on B", lambda: digest_on(pair.b, repository, "stable") == second.digest, pair=pair
    )
    assert sha256_digest(inspect_raw(skopeo, pair.b, repository, "stable")) == second.digest


def test_a_webhook_on_a_gets_the_envelope_with_a_valid_signature(pair, skopeo, tmp_path):
    from webhooks.conftest import readme_verifier  # the README's own verification code

    repository = f"{KEEPS}/webhooked"
    layout = build_oci_layout(tmp_path / "hooked", [8 * 1024], tag="v1")
    push(skopeo, layout, pair.a, repository)

    def tag_created(deliveries) -> bool:
        return any(_tag_event(d, repository, "v1") for d in deliveries)

    deliveries = pair.receiver.wait_for(tag_created, timeout=REPLICATION_WITHIN)
    (delivery,) = [d for d in deliveries if _tag_event(d, repository, "v1")]
    assert delivery.headers["content-type"] == "application/vnd.docker.distribution.events.v2+json"
    verify = readme_verifier()
    assert verify(WEBHOOK_SECRET, delivery.headers["skyport-signature"], delivery.body)
    assert not verify(
        "another-secret-entirely-0123456789", delivery.headers["skyport-signature"], delivery.body
    )
    (event,) = json.loads(delivery.body)["events"]
    assert event["action"] == "push"
    assert event["target"]["digest"] == layout.digest


def _tag_event(delivery, repository: str, tag: str) -> bool:
    events = json.loads(delivery.body).get("events") or []
    return any(
        e.get("target", {}).get("repository") == repository
        and e["target"].get("tag") == tag
        # a manifest pushed by tag names the tag too: the tag's own event is tag.*
        and e.get("skyport", {}).get("eventType", "").startswith("tag.")
        for e in events
    )


def test_a_delete_replicates_only_under_a_rule_with_deletes(pair, skopeo, tmp_path):
    deleted, kept = f"{DELETES}/gone", f"{KEEPS}/stays"
    for repository in (deleted, kept):
        layout = build_oci_layout(tmp_path / repository.replace("/", "-"), [8 * 1024], tag="1.0")
        push(skopeo, layout, pair.a, repository)
        wait_until(
            f"B has {repository}", lambda r=repository, d=layout.digest: digest_on(pair.b, r, "1.0") == d
        )
        skopeo("delete", "--tls-verify=false", f"docker://{pair.a.host}/{repository}:1.0")
        assert pair.a.manifest(repository, "1.0").status_code == 404
    wait_until("the delete reaches B", lambda: pair.b.manifest(deleted, "1.0").status_code == 404, pair=pair)
    # The same events went through the same queue for the other rule: give it the same time.
    time.sleep(5)
    assert pair.b.manifest(kept, "1.0").status_code == 200


@pytest.fixture
def distribution(tmp_path) -> Iterator[str]:
    """Debian's Distribution (`docker-registry`, as `make bench` uses it) on its filesystem
    driver, on a free port: a plain OCI registry as a replication destination."""
    import shutil

    from machine import cannot_run

    if shutil.which("docker-registry") is None:
        cannot_run("docker-registry not installed; run scripts/install-system-deps.sh")
    port = _free_port()
    config = tmp_path / "distribution.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem: {{rootdirectory: {tmp_path / 'storage'}}}\n  delete: {{enabled: true}}\n"
        f'http: {{addr: "127.0.0.1:{port}"}}\n'
    )
    log = tmp_path / "distribution.log"
    environment = base_env()
    environment.pop("AWS_CA_BUNDLE", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    @dataclass
    class _Watched:
        url: str
        proc: subprocess.Popen

    why = _wait_ready(_Watched(url, proc), time.monotonic() + READY_TIMEOUT)
    if why:
        _stop(proc, "docker-registry")
        pytest.fail(f"docker-registry did not start: {why}\n{_log_tail(log)}", pytrace=False)
    try:
        yield url
    finally:
        _stop(proc, "docker-registry")


def test_a_replicates_to_a_distribution_registry(pair, skopeo, tmp_path, distribution):
    repository = "hooks-dist/multi"
    pair.a.skyport("replication", "add", "hooks-dist/*", "--to", distribution, "--insecure")
    layout = build_oci_index_layout(tmp_path / "index", tag="1.0")
    push(skopeo, layout, pair.a, repository, "--all")
    host = distribution.removeprefix("http://")

    def served() -> bool:
        with httpx.Client(trust_env=False, timeout=10) as http:
            response = http.get(
                f"{distribution}/v2/{repository}/manifests/1.0", headers={"Accept": OCI_ACCEPT}
            )
        return response.status_code == 200 and sha256_digest(response.content) == layout.digest

    wait_until("Distribution serves the index", served, pair=pair)
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}:1.0"
    ).stdout.encode()
    assert raw == layout.raw
    for platform, digest in layout.platforms.items():
        manifest = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}@{digest}")
        assert sha256_digest(manifest.stdout.encode()) == digest, platform


def test_b_stopped_while_a_takes_pushes_loses_nothing(pair, skopeo, tmp_path):
    repository = f"{DELETES}/backlog"
    pair.b.stop()
    layouts = [build_oci_layout(tmp_path / f"backlog-{n}", [4 * 1024 + n], tag=f"{n}.0") for n in range(3)]
    for layout in layouts:
        push(skopeo, layout, pair.a, repository)
    time.sleep(3)  # A's replication fails meanwhile, and backs off
    pair.b.start()  # the same port, bucket, table and moto: its storage kept everything
    took = wait_until(
        "the backlog drains to B",
        lambda: all(digest_on(pair.b, repository, layout.tag) == layout.digest for layout in layouts),
        timeout=60,
        pair=pair,
    )
    # What B had before it stopped is still there.
    assert pair.b.manifest(f"{DELETES}/moving", "stable").status_code == 200
    status = pair.a.skyport("replication", "status").stdout
    print(f"backlog drained in {took:.1f}s after B came back\n{status}")
