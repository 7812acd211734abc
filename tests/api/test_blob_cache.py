"""The process's blob link cache (skyport/blob_cache.py) seen over HTTP: a warm blob HEAD/GET
asks nothing of DynamoDB; a delete through this process is seen at once, one behind its back
(another instance, the collector) within the TTL; a miss is never cached."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import pytest
from oci import assert_error, fetch, push_blob, sha256
from skyport.concurrency import MAX_THREADS, start_blocking
from skyport.config import Settings
from skyport.registry import Registry
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient


def _app_client(registry: Registry) -> TestClient:
    return TestClient(create_app(registry), follow_redirects=False)


@pytest.fixture
def other_instance(registry: Registry) -> Iterator[TestClient]:
    """Another instance of the API on the same table and bucket (a second Lambda instance):
    its own process state, so its own cache."""
    with _app_client(Registry(registry.settings, clients=registry.clients)) as http:
        yield http


def _with(registry: Registry, **settings) -> Registry:
    changed: Settings = dataclasses.replace(registry.settings, **settings)
    return Registry(changed, clients=registry.clients)


def test_warm_head_and_get_make_no_dynamodb_call(client, dynamodb_calls):
    data = b"a layer pulled twice"
    digest = push_blob(client, "team/app", data, mode="post")
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200  # warm now, at the latest
    dynamodb_calls.clear()
    head = client.head(f"/v2/team/app/blobs/{digest}")
    get = client.get(f"/v2/team/app/blobs/{digest}")
    assert dynamodb_calls.operations == []
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert get.status_code == 307 and get.headers["Docker-Content-Digest"] == digest
    assert fetch(get.headers["Location"]) == data


def test_filled_on_push_and_on_first_read(asgi_client, other_instance, dynamodb_calls):
    pushed_here = push_blob(asgi_client, "team/app", b"pushed through this instance", mode="post")
    pushed_there = push_blob(other_instance, "team/app", b"pushed through another one", mode="post")
    dynamodb_calls.clear()
    assert asgi_client.head(f"/v2/team/app/blobs/{pushed_here}").status_code == 200
    assert dynamodb_calls.operations == []  # the push filled it
    assert asgi_client.head(f"/v2/team/app/blobs/{pushed_there}").status_code == 200
    assert dynamodb_calls.operations == ["GetItem"]  # the first read fills it ...
    assert asgi_client.get(f"/v2/team/app/blobs/{pushed_there}").status_code == 307
    assert dynamodb_calls.operations == ["GetItem"]  # ... the next ones read nothing


def test_mount_fills_it(asgi_client, dynamodb_calls):
    digest = push_blob(asgi_client, "team/app", b"mounted layer", mode="post")
    mounted = asgi_client.post(f"/v2/team/other/blobs/uploads/?mount={digest}&from=team/app")
    assert mounted.status_code == 201
    dynamodb_calls.clear()
    assert asgi_client.head(f"/v2/team/other/blobs/{digest}").status_code == 200
    assert dynamodb_calls.operations == []


def test_a_miss_is_never_cached(asgi_client, other_instance):
    data = b"pushed elsewhere right after a 404 here"
    digest = sha256(data)
    assert asgi_client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert_error(asgi_client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    push_blob(other_instance, "team/app", data, mode="post")
    assert asgi_client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    assert asgi_client.get(f"/v2/team/app/blobs/{digest}").status_code == 307


def test_deleted_through_this_process_is_gone_at_once(client):
    digest = push_blob(client, "team/app", b"deleted while warm", mode="post")
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    assert client.get(f"/v2/team/app/blobs/{digest}").status_code == 307
    assert client.delete(f"/v2/team/app/blobs/{digest}").status_code == 202
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert_error(client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_deleted_behind_its_back_is_gone_after_the_ttl(registry):
    """Another instance's DELETE, or the collector's, is the table's item going: this
    process may answer from memory until its entry's TTL runs out, never longer."""
    short = _with(registry, blob_cache_seconds=1)
    with _app_client(short) as http:
        digest = push_blob(http, "team/app", b"unlinked by someone else", mode="post")
        assert http.head(f"/v2/team/app/blobs/{digest}").status_code == 200
        registry.clients.dynamodb.delete_item(
            TableName=registry.settings.table, Key=keys.blob_link("team/app", digest)
        )
        deadline = time.monotonic() + 1.0
        assert http.head(f"/v2/team/app/blobs/{digest}").status_code == 200  # the bound, not a bug
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.05)
        assert http.head(f"/v2/team/app/blobs/{digest}").status_code == 404
        assert_error(http.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_the_entry_bound_holds(registry, dynamodb_calls):
    bounded = _with(registry, blob_cache_entries=2)
    with _app_client(bounded) as http:
        first, second, third = (push_blob(http, "team/app", bytes([n]) * 10, mode="post") for n in range(3))
        dynamodb_calls.clear()
        assert http.head(f"/v2/team/app/blobs/{third}").status_code == 200
        assert http.head(f"/v2/team/app/blobs/{second}").status_code == 200
        assert dynamodb_calls.operations == []
        assert http.head(f"/v2/team/app/blobs/{first}").status_code == 200  # the oldest went
        assert dynamodb_calls.operations == ["GetItem"]


def test_off_reads_the_table_every_time(registry, dynamodb_calls):
    off = _with(registry, blob_cache_seconds=0)
    with _app_client(off) as http:
        digest = push_blob(http, "team/app", b"never cached", mode="post")
        dynamodb_calls.clear()
        for _ in range(2):
            assert http.head(f"/v2/team/app/blobs/{digest}").status_code == 200
        assert dynamodb_calls.operations == ["GetItem", "GetItem"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/team/app/blobs/sha256:abc", 400, "DIGEST_INVALID"),
        ("/v2/team/app/blobs/sha256:" + "٣" * 64, 400, "DIGEST_INVALID"),  # Unicode digits
        ("/v2/Team/App/blobs/" + sha256(b"x"), 400, "NAME_INVALID"),
    ],
)
def test_bad_input_gets_the_same_error_warm_or_cold(asgi_client, path, status, code):
    push_blob(asgi_client, "team/app", b"x", mode="post")  # something cached
    assert_error(asgi_client.get(path), status, code)
    assert asgi_client.head(path).status_code == status


def test_a_collector_in_this_process_invalidates_at_once(registry, asgi_client):
    """`skyport serve` may run the collector in the process that serves pulls: what it
    unlinks is 404 at once there, not after the TTL."""
    digest = push_blob(asgi_client, "team/app", b"no manifest references this", mode="post")
    assert asgi_client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    report = registry.gc.run(0)
    assert report["removed"]["links"] >= 1, report
    assert asgi_client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert_error(asgi_client.get(f"/v2/team/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_warm_head_and_get_need_no_worker_thread(asgi_client, other_instance):
    """Every worker thread of the process (skyport/concurrency.py's pool) is held busy: a warm
    blob HEAD/GET is still answered, on the event loop; a cold one, which must read DynamoDB
    in a thread, waits until a thread is free (which shows the pool really is held)."""
    warm = push_blob(asgi_client, "team/app", b"warm: answered on the loop", mode="post")
    cold = push_blob(other_instance, "team/app", b"pushed through another instance: cold here", mode="post")
    release = threading.Event()
    loop = asyncio.new_event_loop()

    async def hold_every_thread() -> list:
        return [start_blocking(release.wait) for _ in range(MAX_THREADS)]

    held = loop.run_until_complete(hold_every_thread())
    requests = futures.ThreadPoolExecutor(2)
    try:
        head = requests.submit(asgi_client.head, f"/v2/team/app/blobs/{warm}").result(timeout=10)
        get = requests.submit(asgi_client.get, f"/v2/team/app/blobs/{warm}").result(timeout=10)
        assert head.status_code == 200 and get.status_code == 307
        waiting = requests.submit(asgi_client.head, f"/v2/team/app/blobs/{cold}")
        with pytest.raises(futures.TimeoutError):
            waiting.result(timeout=1)
        release.set()
        assert waiting.result(timeout=10).status_code == 200
    finally:
        release.set()  # before anything waits on a request that may still need a thread
        requests.shutdown(wait=True)
        loop.run_until_complete(asyncio.gather(*held))
        loop.close()
