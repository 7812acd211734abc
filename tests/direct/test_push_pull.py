"""`skyport push` and `skyport pull` against a served registry (uvicorn + moto): each
source, skipping what exists, resuming, parallel parts, and the round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from e2e.images import (
    MiB,
    build_docker_archive,
    build_oci_index_layout,
    build_oci_layout,
    read_oci_layout,
)
from skyport.direct_uploads import DIRECT_MIN_PART

from .running import skyport


def _manifest(served, name: str, reference: str) -> bytes:
    import urllib3

    response = urllib3.request(
        "GET",
        f"{served.url}/v2/{name}/manifests/{reference}",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    assert response.status == 200, response.data
    return response.data


def _blob(served, name: str, digest: str) -> bytes:
    import urllib3

    response = urllib3.request("GET", f"{served.url}/v2/{name}/blobs/{digest}")  # follows the 307 to S3
    assert response.status == 200
    return response.data


def test_push_oci_layout_in_parallel_parts_then_pull_round_trip(served, tmp_path: Path) -> None:
    # A layer of 2.5 parts: three parts, the last one short, sent side by side.
    layout = build_oci_layout(tmp_path / "src", [DIRECT_MIN_PART * 2 + DIRECT_MIN_PART // 2, 1000], tag="1.0")
    state = tmp_path / "state.json"
    pushed = skyport("push", "--jobs", "4", layout.ref, f"{served.address}/team/app:1.0", state=state)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == layout.digest
    assert "3 blobs uploaded, 0 already there" in pushed.stderr
    assert _manifest(served, "team/app", "1.0") == layout.raw
    for digest in layout.blobs:
        if digest != layout.digest:
            assert hashlib.sha256(_blob(served, "team/app", digest)).hexdigest() == digest[7:]

    pulled = tmp_path / "pulled"
    # Ranges of 5 MiB, 4 at a time (given: from loopback the default is one GET a blob).
    result = skyport(
        "pull",
        "--jobs",
        "4",
        "--range-mib",
        "5",
        f"{served.address}/team/app:1.0",
        f"oci:{pulled}",
        state=state,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == layout.digest
    descriptor, raw, blobs = read_oci_layout(pulled, "1.0")  # checks every blob against its name
    assert raw == layout.raw and descriptor["digest"] == layout.digest
    assert set(blobs) == set(layout.blobs)


def test_second_push_skips_every_blob(served, tmp_path: Path) -> None:
    layout = build_oci_layout(tmp_path / "src", [2 * MiB], tag="v1")
    state = tmp_path / "state.json"
    assert skyport("push", layout.ref, f"{served.address}/a/one:v1", state=state).returncode == 0
    again = skyport("push", layout.ref, f"{served.address}/a/one:v1", state=state)
    assert again.returncode == 0 and "0 blobs uploaded, 2 already there" in again.stderr
    # Another repository: the registry holds the blobs, so they are linked, not sent.
    other = skyport("push", layout.ref, f"{served.address}/b/two:v1", state=state)
    assert other.returncode == 0 and "0 blobs uploaded, 2 already there" in other.stderr
    assert _manifest(served, "b/two", "v1") == layout.raw


def test_multi_platform_index_is_pushed_whole(served, tmp_path: Path) -> None:
    layout = build_oci_index_layout(tmp_path / "src")
    state = tmp_path / "state.json"
    pushed = skyport("push", layout.ref, f"{served.address}/multi/app:1.0", state=state)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == layout.digest
    assert _manifest(served, "multi/app", "1.0") == layout.raw
    for child in layout.platforms.values():
        _manifest(served, "multi/app", child)
    pulled = tmp_path / "pulled"
    assert skyport("pull", f"{served.address}/multi/app:1.0", f"oci:{pulled}", state=state).returncode == 0
    _, raw, blobs = read_oci_layout(pulled, "1.0")
    assert raw == layout.raw and set(blobs) == set(layout.blobs)


def test_push_docker_archive(served, tmp_path: Path) -> None:
    archive = build_docker_archive(tmp_path / "image.tar", [3 * MiB, 1000], "team/saved:2.0")
    state = tmp_path / "state.json"
    pushed = skyport("push", f"docker-archive:{archive.path}", f"{served.address}/team/saved", state=state)
    assert pushed.returncode == 0, pushed.stderr
    manifest = json.loads(_manifest(served, "team/saved", "2.0"))  # the archive's own tag
    assert hashlib.sha256(_manifest(served, "team/saved", "2.0")).hexdigest() == pushed.stdout.strip()[7:]
    # The image ID (the config's digest) and the layers (uncompressed tars: their digests
    # are the diff IDs) are those docker would give.
    assert manifest["config"]["digest"] == archive.image_id
    assert [layer["digest"] for layer in manifest["layers"]] == archive.layer_diff_ids
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}


def test_interrupted_push_resumes_with_the_missing_parts_only(served, tmp_path: Path) -> None:
    # 4 parts of the layer; the config (one part) goes first, then 2 of the layer.
    layout = build_oci_layout(tmp_path / "src", [DIRECT_MIN_PART * 3], tag="1.0")
    state = tmp_path / "state.json"
    target = f"{served.address}/team/resume:1.0"
    stopped = skyport("push", "--jobs", "1", "--stop-after-parts", "3", layout.ref, target, state=state)
    assert stopped.returncode == 3, stopped.stderr
    (upload_id,) = json.loads(state.read_text()).values()
    registry = served.registry
    session = registry.uploads.status("team/resume", upload_id)
    listed = registry.clients.s3.list_parts(
        Bucket=registry.settings.bucket, Key=session.blob_key, UploadId=session.multipart_id
    )["Parts"]
    assert [part["PartNumber"] for part in listed] == [1, 2]

    resumed = skyport("push", "--jobs", "2", layout.ref, target, state=state)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 4 parts were there already" in resumed.stderr
    assert resumed.stdout.strip() == layout.digest
    assert json.loads(state.read_text()) == {}
    assert _manifest(served, "team/resume", "1.0") == layout.raw


def test_auth_on_credentials_from_docker_config_or_username_and_scopes(
    moto_endpoint, aws_clients, template, tmp_path: Path
) -> None:
    import base64

    from auth.conftest import make_auth_settings
    from skyport.registry import Registry

    from .running import serve

    registry = Registry(make_auth_settings(moto_endpoint, aws_clients, template), clients=aws_clients)
    admin = registry.identities
    pusher, pusher_secret = admin.add_robot("ci")
    reader, reader_secret = admin.add_robot("reader")
    admin.grant("team/*", pusher.name, ["push"])
    admin.grant("team/*", reader.name, ["pull"])
    layout = build_oci_layout(tmp_path / "src", [1000], tag="1.0")
    state = tmp_path / "state.json"
    with serve(registry) as served:
        target = f"{served.address}/team/app:1.0"
        anonymous = skyport("push", layout.ref, target, state=state)
        assert anonymous.returncode == 1 and "HTTP 401" in anonymous.stderr
        as_reader = skyport(
            "push",
            "--username",
            reader.name,
            layout.ref,
            target,
            state=state,
            env={"SKYPORT_PASSWORD": reader_secret},
        )
        assert as_reader.returncode == 1 and "HTTP 403" in as_reader.stderr
        config = tmp_path / "docker"
        config.mkdir()
        auth = base64.b64encode(f"{pusher.name}:{pusher_secret}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {served.address: {"auth": auth}}}))
        pushed = skyport("push", layout.ref, target, state=state, env={"DOCKER_CONFIG": str(config)})
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.strip() == layout.digest
        pulled = skyport(
            "pull",
            "--username",
            reader.name,
            f"{served.address}/team/app:1.0",
            f"oci:{tmp_path / 'pulled'}",
            state=state,
            env={"SKYPORT_PASSWORD": reader_secret},
        )
        assert pulled.returncode == 0, pulled.stderr
