"""EVENT_SOURCE_FILTER (the Lambda event source mapping's FilterCriteria) and the Python
filter agree on every key kind keys.py builds; identity, grant, lockout, auth and upload
activity yields no event."""

from __future__ import annotations

import base64
import inspect
import json
import uuid
from dataclasses import replace

import pytest
from moto.events.models import EventPattern
from oci import push_blob
from skyport.events import EVENT_SOURCE_FILTER, is_registry_item, registry_events
from skyport.registry import Registry
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient
from stream_reader import stream_records

DIGEST = "sha256:" + "ab" * 32
# One key of every kind keys.py builds, with names chosen to tempt a prefix test: a
# repository called like a sort key prefix, a tag named like the catalog.
KEY_KINDS = {
    "blob": (keys.blob(DIGEST), False),
    "blob_link": (keys.blob_link("TAG#x", DIGEST), False),
    "manifest": (keys.manifest("library/app", DIGEST), True),
    "tag": (keys.tag("MANIFEST#", "CATALOG"), True),
    "referrer": (keys.referrer("library/app", DIGEST, DIGEST), False),
    "catalog_entry": (keys.catalog_entry("REPO#odd"), True),
    "upload": (keys.upload(str(uuid.uuid4())), False),
    "open_uploads": (keys.open_uploads("repository:REPO#x"), False),
    "identity": (keys.identity("REPO#admin"), False),
    "lockout": (keys.lockout("alice", "192.0.2.1"), False),
    "grant": (keys.grant("*", "group:TAG#x"), False),
    "signing_keys": (keys.signing_keys(), False),
    "bootstrap_marker": (keys.bootstrap_marker(), False),
    # webhooks (issue 11): a webhook id or event id shaped like registry keys changes nothing
    "webhook": (keys.webhook("REPO#x"), False),
    "webhook_delivery": (keys.webhook_delivery("CATALOG", "TAG#x"), False),
    "replication_rule": (keys.replication_rule("REPO#x"), False),
    "replication_order": (keys.replication_order("x", "REPO#a:TAG#b"), False),
    # tag immutability (issue 12): rules are not registry content
    "immutability_rule": (keys.immutability_rule("REPO#x"), False),
    # last-pull records (issue 12): a pull is not a registry change
    "manifest_pull": (keys.manifest_pull("library/app", DIGEST), False),
    # retention (issue 12): rules and the scheduled run's place are not registry content
    "retention_rule": (keys.retention_rule("REPO#x"), False),
    "retention_cursor": (keys.retention_cursor(), False),
    # garbage collection (issue 12): the collector's run item is not registry content
    "gc_run": (keys.gc_run(), False),
    # pull-through cache (issue 13): rules and fill leases are not registry content
    "cache_rule": (keys.cache_rule("REPO#x"), False),
    "cache_fill_lease": (keys.cache_fill_lease("library/app", DIGEST), False),
    # scan policies (issue 14): a policy is not registry content
    "scan_policy": (keys.scan_policy("REPO#x/*"), False),
    # scan on push (issue 14): a scan record's outcome is scan.completed or scan.failed
    "scan_record": (keys.scan_record("library/app", DIGEST), True),
}


def test_every_key_builder_of_keys_py_is_covered():
    builders = {
        name
        for name, function in inspect.getmembers(keys, inspect.isfunction)
        if not name.startswith("_")
        and function.__module__ == keys.__name__
        and function.__annotations__.get("return") == "dict"
    }
    assert builders == set(KEY_KINDS)


def _record(record_keys: dict) -> dict:
    return {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"Keys": record_keys},
    }


def _pattern_lets_through(record: dict) -> bool:
    # Lambda event filtering has EventBridge's pattern syntax; moto's EventBridge matcher is
    # an implementation of it that is not ours. Filters are ORed.
    return any(
        EventPattern(entry["Pattern"], json.loads(entry["Pattern"])).matches_event(record)
        for entry in EVENT_SOURCE_FILTER["Filters"]
    )


@pytest.mark.parametrize("kind", sorted(KEY_KINDS))
def test_the_pattern_and_the_python_filter_agree(kind: str):
    record_keys, registry_content = KEY_KINDS[kind]
    record = _record(record_keys)
    assert is_registry_item(record_keys) is registry_content
    assert _pattern_lets_through(record) is registry_content


def test_identity_grant_lockout_auth_and_upload_activity_yields_no_events(settings, aws_clients):
    # The `settings` fixture made the table (from template.yaml) and the bucket.
    registry = Registry(replace(settings, auth="on"), clients=aws_clients)
    ids = registry.identities
    ids.add_user("root", "root-password-1", admin=True)
    ids.add_user("erin", "erin-password-1", groups=["devs"])
    robot, secret = ids.add_robot("ci")
    ids.grant("team/*", "group:devs", ["push"])
    ids.grant("team/*", robot.name, ["pull"])
    ids.set_public("pub/*")
    ids.set_password("erin", "erin-password-2")
    ids.revoke("team/*", robot.name)

    def basic(user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    with TestClient(create_app(registry), follow_redirects=False) as client:
        assert client.get("/auth/token", headers=basic("erin", "wrong-password-0")).status_code == 401
        token = client.get(
            "/auth/token",
            params={"scope": "repository:team/app:push,pull"},
            headers=basic("erin", "erin-password-2"),
        )
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        client.headers.update(bearer)
        push_blob(client, "team/app", b"layer" * 100, mode="patch", chunk=200)
    ids.delete(robot.name)

    records = stream_records(registry)
    touched = {record["dynamodb"]["Keys"]["PK"]["S"].split("#")[0] for record in records}
    # Not vacuous: the activity wrote every kind of non-registry item.
    assert {"IDENTITY", "GRANT", "LOCKOUT", "AUTH", "UPLOAD", "OPEN_UPLOADS", "BLOB", "REPO"} <= touched
    assert [event for record in records for event in registry_events(record)] == []
    assert not any(_pattern_lets_through(record) for record in records)
