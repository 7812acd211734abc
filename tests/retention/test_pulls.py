"""Last-pull records (skyport/pulls.py): a GET of a manifest records it, a HEAD does not;
N GETs cost at most one write per interval and process, several processes do not each
rewrite it, a failing write never fails the pull, and the record goes with its manifest."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError
from oci import make_image, make_index, push_image, put_manifest
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import pull, pull_records, push


def test_a_get_by_tag_or_digest_records_the_manifest_and_a_head_does_not(client, registry):
    digest = push(client, "team/app", "v1")
    assert client.head("/v2/team/app/manifests/v1").status_code == 200
    assert client.head(f"/v2/team/app/manifests/{digest}").status_code == 200
    assert pull_records(registry, "team/app") == {}
    before = int(time.time() * 1000)
    pull(client, "team/app", "v1")
    records = pull_records(registry, "team/app")
    assert list(records) == [digest] and before <= records[digest] <= int(time.time() * 1000)


def test_n_gets_write_at_most_once_per_interval_counted_against_moto(app_client, registry, dynamodb_calls):
    digest = push(app_client, "team/app", "v1")
    other = push(app_client, "team/app", "v2")
    dynamodb_calls.operations.clear()
    for _ in range(20):
        pull(app_client, "team/app", "v1")
        pull(app_client, "team/app", digest)
    pull(app_client, "team/app", "v2")
    # 41 pulls: one UpdateItem per manifest (v1 by tag and by digest is one manifest).
    assert dynamodb_calls.count("UpdateItem") == 2
    assert set(pull_records(registry, "team/app")) == {digest, other}


def test_another_process_tries_once_and_does_not_rewrite(app_client, registry, settings, aws_clients):
    push(app_client, "team/app", "v1")
    pull(app_client, "team/app", "v1")
    first = pull_records(registry, "team/app")
    # A second process (a second warm Lambda): its own map, the same table.
    with TestClient(create_app(Registry(settings, clients=aws_clients))) as second:
        for _ in range(5):
            pull(second, "team/app", "v1")
    assert pull_records(registry, "team/app") == first  # PULL_RECORD_IS_STALE refused it


def test_the_record_moves_forward_after_the_interval(registry, settings, aws_clients):
    quick = Registry(replace(settings, pull_record_seconds=1), clients=aws_clients)
    with TestClient(create_app(quick)) as client:
        push(client, "team/app", "v1")
        pull(client, "team/app", "v1")
        first = pull_records(registry, "team/app")
        pull(client, "team/app", "v1")
        assert pull_records(registry, "team/app") == first  # within the interval
        time.sleep(1.1)
        pull(client, "team/app", "v1")
        (second,) = pull_records(registry, "team/app").values()
        assert second >= next(iter(first.values())) + 1000


def test_a_failing_table_write_does_not_fail_the_pull(app_client, registry, caplog):
    digest = push(app_client, "team/app", "v1")

    def refuse(model, **_):
        if model.name == "UpdateItem":
            throttled = {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}
            raise ClientError({"Error": throttled}, "UpdateItem")

    events = registry.clients.dynamodb.meta.events
    events.register("before-call.dynamodb", refuse)
    try:
        response = app_client.get(f"/v2/team/app/manifests/{digest}")
    finally:
        events.unregister("before-call.dynamodb", refuse)
    assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest
    assert pull_records(registry, "team/app") == {}
    assert "last-pull record of team/app@" in caplog.text


def test_an_index_pull_and_its_platform_manifest_each_count(app_client, registry):
    children = [make_image(layer_sizes=(32,)) for _ in range(2)]
    for child in children:
        push_image(app_client, "team/multi", child)
    body, media_type = make_index(children)
    response = put_manifest(app_client, "team/multi", "v1", body, media_type)
    assert response.status_code == 201
    index = response.headers["Docker-Content-Digest"]
    pull(app_client, "team/multi", "v1")  # the index
    pull(app_client, "team/multi", children[0].digest)  # what a client on amd64 GETs next
    assert set(pull_records(registry, "team/multi")) == {index, children[0].digest}


def test_the_record_goes_with_its_manifest(app_client, registry):
    digest = push(app_client, "team/app", "v1")
    pull(app_client, "team/app", "v1")
    assert digest in pull_records(registry, "team/app")
    assert app_client.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
    assert pull_records(registry, "team/app") == {}


@pytest.mark.parametrize("value", ["0", "-5", "86401", "١٢", "1h", " 60"])
def test_a_bad_interval_is_refused_at_start(value):
    from skyport.config import Settings

    with pytest.raises(ValueError, match="SKYPORT_PULL_RECORD_SECONDS"):
        Settings.from_env({"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t", "SKYPORT_PULL_RECORD_SECONDS": value})


def test_concurrent_gets_in_one_process_write_once(app_client, registry, dynamodb_calls):
    from concurrent.futures import ThreadPoolExecutor

    digest = push(app_client, "team/app", "v1")
    dynamodb_calls.operations.clear()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: pull(app_client, "team/app", digest), range(32)))
    assert dynamodb_calls.count("UpdateItem") == 1


def test_the_map_is_bounded_and_a_forgotten_entry_costs_one_more_try(registry, settings, aws_clients):
    from skyport.pulls import PullRecorder
    from skyport.storage.dynamodb.pulls import DynamoPullStore

    recorder = PullRecorder(DynamoPullStore(aws_clients.dynamodb, settings.table), max_entries=3)
    digests = [f"sha256:{i:064x}" for i in range(5)]
    first = recorder.note("team/app", digests[0])
    assert first is not None
    first()
    assert recorder.note("team/app", digests[0]) is None
    for digest in digests[1:]:
        write = recorder.note("team/app", digest)
        assert write is not None
        write()
    written = pull_records(registry, "team/app")
    assert set(written) == set(digests)
    # digests[0] was the least recently noted of four: dropped, so noted again it is due...
    again = recorder.note("team/app", digests[0])
    assert again is not None
    again()  # ...and the table's condition (PULL_RECORD_IS_STALE) refuses the rewrite.
    assert pull_records(registry, "team/app") == written
