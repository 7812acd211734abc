"""Cache rules from the CLI (add, list, remove; refusals with a clear message and nothing
stored), name mapping attacks, client writes into a cache prefix refused, and the
registry-mirrors path for unprefixed names."""

from __future__ import annotations

import contextlib
import json
import socket
from http.server import BaseHTTPRequestHandler

import pytest
from cli_support import run_cli as run
from cli_support import table_flags, write_served_state
from http_stub import serve_http, url_of
from oci import OCI_MANIFEST, assert_error, make_image, push_image, send_raw, sha256
from skyport.registry import Registry
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import PREFIX


def rule_items(registry: Registry) -> list[dict]:
    return registry.clients.dynamodb.query(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.CACHE}},
    )["Items"]


@pytest.fixture
def served(registry: Registry, tmp_path, monkeypatch) -> None:
    write_served_state(registry.settings, tmp_path, monkeypatch)


@pytest.mark.parametrize("command", [["cache"], ["cache", "add"], ["cache", "list"], ["cache", "remove"]])
def test_every_cache_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: skyport cache" in out


def test_add_list_remove_on_the_served_registry(capsys, served, registry, monkeypatch):
    monkeypatch.setenv("HUB_PASSWORD", "s3cret-never-printed")
    code, out, err = run(
        capsys,
        "cache",
        "add",
        "hub",
        "docker.io",
        "--username",
        "me",
        "--password-env",
        "HUB_PASSWORD",
        "--mirror",
        "--no-probe",  # no internet here: the probe is tested against local upstreams below
    )
    assert code == 0, err
    assert out.startswith("cache rule added: hub/* pulls through from https://registry-1.docker.io as me")
    code, out, err = run(capsys, "cache", "add", "mirrors/quay", "https://quay.io", "--no-probe")
    assert code == 0, err
    code, out, _ = run(capsys, "cache", "list")
    assert out.splitlines() == [
        "hub\thttps://registry-1.docker.io\tuser: me\tmirror",
        "mirrors/quay\thttps://quay.io\tuser: -\t-",
    ]
    code, out, _ = run(capsys, "cache", "list", "--json")
    listed = json.loads(out)
    assert listed[0]["password_env"] == "HUB_PASSWORD"  # the variable's NAME, locally
    everything = json.dumps(rule_items(registry)) + out
    assert "s3cret" not in everything
    code, out, err = run(capsys, "cache", "remove", "hub")
    assert code == 0 and "removed" in out, err
    assert [item["SK"]["S"] for item in rule_items(registry)] == ["RULE#mirrors/quay"]
    code, _, err = run(capsys, "cache", "remove", "hub")
    assert code == 1 and "no cache rule for hub" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Hub", "docker.io"], "bad prefix"),
        (["hub/", "docker.io"], "bad prefix"),
        (["../x", "docker.io"], "bad prefix"),
        (["a/b/c/d/e", "docker.io"], "bad prefix"),
        (["x" * 65, "docker.io"], "bad prefix"),
        (["hüb", "docker.io"], "bad prefix"),
        (["ghcr", "http://ghcr.io"], "add --insecure"),
        (["ghcr", "https://user:pw@ghcr.io"], "must not carry credentials"),
        (["ghcr", "ftp://ghcr.io"], "http:// or https://"),
        (["ghcr", "https://ghcr.io/v2/x"], "without a path"),
        (["ghcr", "http://169.254.169.254", "--insecure"], "link-local"),
        (["ghcr", "http://2852039166", "--insecure"], "link-local"),  # 169.254.169.254
        (["ghcr", "https://ghcr.io", "--username", "me"], "go together"),
        (["ghcr", "https://ghcr.io", "--username", "me", "--password-env", "1BAD"], "environment variable"),
        (["hub/library", "docker.io"], "overlaps the rule for hub"),
        (["hub", "https://ghcr.io"], "overlaps the rule for hub"),
        (["other", "https://ghcr.io", "--mirror"], "mirror already"),
    ],
)
def test_add_refusals_store_nothing(capsys, served, registry, argv, message):
    registry.cache_rules.add("hub", "docker.io", mirror=True)
    before = rule_items(registry)
    code, out, err = run(capsys, "cache", "add", *argv)
    assert code == 1 and message in err, (out, err)
    assert rule_items(registry) == before


def test_a_prefix_with_pushed_repositories_is_refused(capsys, served, registry):
    with TestClient(create_app(registry), follow_redirects=False) as client:
        push_image(client, "team/app", make_image(), "v1")
        push_image(client, "solo", make_image(), "v1")
    for prefix in ("team", "solo"):
        code, _, err = run(capsys, "cache", "add", prefix, "https://ghcr.io")
        assert code == 1 and "holds repositories" in err
    code, _, err = run(capsys, "cache", "add", "tea", "https://ghcr.io", "--no-probe")
    assert code == 0, err
    assert [rule.prefix for rule in registry.cache_rules.list_rules()] == ["tea"]


def test_add_probes_the_upstream_first(capsys, served, registry, served_upstream):
    """GET /v2/ of the upstream before anything is stored: a registry (200, or 401 with a
    challenge) is added; nothing listening, or something that is not a registry, is
    refused with what answered, and nothing is stored."""
    before = rule_items(registry)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    code, out, err = run(capsys, "cache", "add", "gone", f"http://127.0.0.1:{closed}")
    assert code == 1 and "is unreachable" in err and "--no-probe" in err, (out, err)
    with _answering(404) as not_a_registry:
        code, out, err = run(capsys, "cache", "add", "web", not_a_registry)
    assert code == 1 and "answered HTTP 404, not as a registry" in err, (out, err)
    code, out, err = run(capsys, "cache", "add", "long", "https://" + "a" * 64 + ".example")
    assert code == 1 and "not a valid host name" in err, (out, err)
    assert rule_items(registry) == before
    code, out, err = run(capsys, "cache", "add", "local", served_upstream.url)
    assert code == 0, err
    code, out, err = run(capsys, "cache", "add", "later", f"http://127.0.0.1:{closed}", "--no-probe")
    assert code == 0, err
    assert {rule.prefix for rule in registry.cache_rules.list_rules()} == {"local", "later"}


@contextlib.contextmanager
def _answering(status: int):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve_http(Handler) as server:
        yield url_of(server)


def test_against_a_table(capsys, registry):
    code, _, err = run(
        capsys, "cache", "add", "ghcr", "ghcr.io", "--no-probe", *table_flags(registry.settings)
    )
    assert code == 0, err
    assert registry.cache_rules.list_rules()[0].upstream == "https://ghcr.io"


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_path", "status", "code"),
    [
        (f"/v2/{PREFIX}/manifests/latest", 404, "NAME_UNKNOWN"),  # the prefix alone
        (f"/v2/{PREFIX}/../x/manifests/latest", 400, "NAME_INVALID"),
        (f"/v2/{PREFIX}%2F..%2Fx/manifests/latest", 400, "NAME_INVALID"),
        (f"/v2/{PREFIX}/Library/App/manifests/latest", 400, "NAME_INVALID"),
        (f"/v2/{PREFIX}/{'a' * 260}/manifests/latest", 400, "NAME_INVALID"),
        (f"/v2/{PREFIX}/x/manifests/%C2%B2", 400, "TAG_INVALID"),
        (f"/v2/{PREFIX}/x/manifests/sha256:{'٣' * 64}", 400, "DIGEST_INVALID"),
        (f"/v2/{PREFIX}/x/blobs/sha256:{'٣' * 64}", 400, "DIGEST_INVALID"),
    ],
)
def test_name_mapping_cannot_escape(cache_client, control, storage, raw_path, status, code):
    before = storage.snapshot()
    response = send_raw(cache_client, "GET", raw_path, headers={"Accept": OCI_MANIFEST})
    assert_error(response, status, code)
    assert control.requests == []  # nothing was asked upstream
    assert storage.snapshot() == before


def test_client_pushes_and_deletes_into_a_cache_prefix_are_refused(cache_client, upstream_client, storage):
    image = make_image()
    digest = push_image(upstream_client, "team/app", image, "v1")
    assert (
        cache_client.get(f"/v2/{PREFIX}/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code
        == 200
    )
    before = storage.snapshot()
    name = f"{PREFIX}/team/app"
    for response in (
        cache_client.post(f"/v2/{name}/blobs/uploads/"),
        cache_client.put(
            f"/v2/{name}/manifests/v2", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        ),
        cache_client.delete(f"/v2/{name}/manifests/{digest}"),
        cache_client.delete(f"/v2/{name}/manifests/v1"),
        cache_client.delete(f"/v2/{name}/blobs/{image.digest}"),
    ):
        error = assert_error(response, 403, "DENIED")
        assert "read-only to clients" in error["message"]
    for response in (
        cache_client.post(f"/v2/{PREFIX}/blobs/uploads/"),
        cache_client.put(
            f"/v2/{PREFIX}/manifests/v2", content=image.manifest, headers={"Content-Type": OCI_MANIFEST}
        ),
    ):
        assert "cache prefix" in assert_error(response, 403, "DENIED")["message"]
    assert storage.snapshot() == before


def test_unprefixed_names_are_mirrored_when_no_such_repository_exists(
    registry, served_upstream, upstream_client
):
    registry.cache_rules.add("hub", served_upstream.url, mirror=True)
    image = make_image()
    digest = push_image(upstream_client, "library/alpine", image, "3.19")
    local = make_image()
    with TestClient(create_app(registry), follow_redirects=False) as client:
        push_image(client, "library/mine", local, "v1")
        response = client.get("/v2/library/alpine/manifests/3.19", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest
        # Stored once, under the rule's prefix: the prefixed name reads the same copy.
        assert "hub/library/alpine" in client.get("/v2/_catalog").json()["repositories"]
        blob = client.get(f"/v2/library/alpine/blobs/{sha256(image.layers[0])}")
        assert (
            blob.status_code == 307 and served_upstream.registry.settings.bucket in blob.headers["Location"]
        )
        # A repository the registry holds is never mirrored.
        assert (
            client.get("/v2/library/mine/manifests/v1", headers={"Accept": OCI_MANIFEST}).content
            == local.manifest
        )
        missing = client.get("/v2/library/mine/manifests/v2", headers={"Accept": OCI_MANIFEST})
        assert_error(missing, 404, "MANIFEST_UNKNOWN")
