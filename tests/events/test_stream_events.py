"""Registry events from the table's stream: push, tag, delete through the API on moto, read
the stream with the dynamodbstreams client, convert every record (skyport.events)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from moto.events.models import EventPattern
from oci import make_artifact, make_index, push_image, put_manifest, sha256
from skyport.events import EVENT_SOURCE_FILTER, is_registry_item, registry_events
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient
from stream_reader import fixed_image, stream_records

REPO = "samples/app"
SAMPLES = Path(__file__).resolve().parents[2] / "events"
# Set to write events/stream and events/registry from this run instead of checking them.
WRITE_SAMPLES = os.environ.get("SKYPORT_WRITE_EVENT_SAMPLES") == "1"


def run_scenario(registry: Registry) -> tuple[list[dict], dict[str, str]]:
    """Push A as latest, B as latest (the tag moves), A again as stable, an SBOM of A by
    digest; delete the tag stable, then the manifest B (its tag latest goes with it)."""
    a, b = fixed_image("a"), fixed_image("b")
    sbom = make_artifact(a.manifest)
    with TestClient(create_app(registry), follow_redirects=False) as client:
        push_image(client, REPO, a, "latest")
        push_image(client, REPO, b, "latest")
        push_image(client, REPO, a, "stable")
        push_image(client, REPO, sbom)
        assert client.delete(f"/v2/{REPO}/manifests/stable").status_code == 202
        assert client.delete(f"/v2/{REPO}/manifests/{b.digest}").status_code == 202
    return stream_records(registry), {"a": a.digest, "b": b.digest, "sbom": sbom.digest}


def test_a_push_tag_move_and_deletes_yield_exactly_these_events_in_order(registry: Registry):
    records, digest = run_scenario(registry)
    events = [event for record in records for event in registry_events(record)]
    assert [(e.type, e.ordering_key, e.digest, e.previous_digest) for e in events] == [
        ("manifest.pushed", f"{REPO}@{digest['a']}", digest["a"], None),
        ("repository.created", REPO, None, None),
        ("tag.created", f"{REPO}:latest", digest["a"], None),
        ("manifest.pushed", f"{REPO}@{digest['b']}", digest["b"], None),
        ("tag.moved", f"{REPO}:latest", digest["b"], digest["a"]),
        # A pushed again: its items rewritten unchanged, only the new tag is news.
        ("tag.created", f"{REPO}:stable", digest["a"], None),
        ("manifest.pushed", f"{REPO}@{digest['sbom']}", digest["sbom"], None),
        ("tag.deleted", f"{REPO}:stable", None, digest["a"]),
        ("manifest.deleted", f"{REPO}@{digest['b']}", digest["b"], None),
        ("tag.deleted", f"{REPO}:latest", None, digest["b"]),
    ]
    assert all(e.repository == REPO and e.time.endswith("Z") and e.sequence_number for e in events)
    assert len({e.id for e in events}) == len(events)

    pushed_a, sbom = events[0].to_dict(), events[6].to_dict()
    assert pushed_a == {
        "id": pushed_a["id"],
        "type": "manifest.pushed",
        "time": pushed_a["time"],
        "repository": REPO,
        "orderingKey": f"{REPO}@{digest['a']}",
        "sequenceNumber": pushed_a["sequenceNumber"],
        "digest": digest["a"],
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": len(fixed_image("a").manifest),
        # As the referrers API lists it: an image manifest's config media type.
        "artifactType": "application/vnd.oci.image.config.v1+json",
        # The tag the push named (a push by digest: none).
        "tags": ["latest"],
    }
    assert sbom["tags"] == []
    assert sbom["artifactType"] == "application/vnd.example.sbom.v1"
    assert sbom["subject"] == digest["a"]
    tag_created = events[2].to_dict()
    assert (tag_created["tag"], tag_created["mediaType"], tag_created["size"]) == (
        "latest",
        "application/vnd.oci.image.manifest.v1+json",
        len(fixed_image("a").manifest),
    )
    # Every record that yields an event is one the event source filter lets through, and
    # the filter's pattern (as moto's EventBridge matcher reads it) agrees on each record.
    assert all(is_registry_item(r["dynamodb"]["Keys"]) for r in records if registry_events(r))
    patterns = [EventPattern(f["Pattern"], json.loads(f["Pattern"])) for f in EVENT_SOURCE_FILTER["Filters"]]
    for record in records:
        let_through = any(pattern.matches_event(record) for pattern in patterns)
        assert let_through is is_registry_item(record["dynamodb"]["Keys"]), record["dynamodb"]["Keys"]


def test_a_multi_platform_push_and_an_unchanged_repush(registry: Registry):
    children = [fixed_image("amd64"), fixed_image("arm64")]
    index, index_type = make_index(children)
    with TestClient(create_app(registry), follow_redirects=False) as client:
        for child in children:
            push_image(client, "multi/app", child)
        for _ in range(2):  # the second push of the same index by the same tag changes nothing
            response = put_manifest(client, "multi/app", "v1", index, index_type)
            assert response.status_code == 201, response.text
    events = [event.to_dict() for record in stream_records(registry) for event in registry_events(record)]
    index_digest = sha256(index)
    assert [(e["type"], e.get("digest")) for e in events] == [
        ("manifest.pushed", children[0].digest),
        ("repository.created", None),
        ("manifest.pushed", children[1].digest),
        ("manifest.pushed", index_digest),
        ("tag.created", index_digest),
    ]
    assert events[3]["mediaType"] == index_type and "artifactType" not in events[3]
    assert events[4] == {**events[4], "tag": "v1", "mediaType": index_type, "size": len(index)}


def test_deleting_a_repositorys_last_manifest_deletes_the_repository(registry: Registry):
    image, other = fixed_image("a"), fixed_image("b")
    with TestClient(create_app(registry), follow_redirects=False) as client:
        push_image(client, "gone/app", image, "v1")
        push_image(client, "gone/app", other, "v2")
        assert client.delete(f"/v2/gone/app/manifests/{image.digest}").status_code == 202
        # One manifest left: the repository stays.
        assert "gone/app" in client.get("/v2/_catalog").json()["repositories"]
        assert client.delete(f"/v2/gone/app/manifests/{other.digest}").status_code == 202
        assert "gone/app" not in client.get("/v2/_catalog").json()["repositories"]
        assert client.get("/v2/gone/app/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
        push_image(client, "gone/app", image, "v1")  # and a push brings it back
        assert "gone/app" in client.get("/v2/_catalog").json()["repositories"]
    events = [e for record in stream_records(registry) for e in registry_events(record)]
    assert [e.type for e in events if e.type.startswith("repository.")] == [
        "repository.created",
        "repository.deleted",
        "repository.created",
    ]
    deleted = next(e for e in events if e.type == "repository.deleted")
    assert (deleted.repository, deleted.ordering_key) == ("gone/app", "gone/app")


def test_converting_the_same_records_again_yields_the_same_ids(registry: Registry):
    records, _ = run_scenario(registry)
    first = [event.to_dict() for record in records for event in registry_events(record)]
    # A redelivery is the same record again (same eventID), possibly in another batch.
    again = [
        event.to_dict()
        for record in reversed(json.loads(json.dumps(records)))
        for event in registry_events(record)
    ]
    assert sorted(first, key=lambda e: e["id"]) == sorted(again, key=lambda e: e["id"])
    assert all(
        event["id"].startswith(record["eventID"])
        for record in records
        for event in [e.to_dict() for e in registry_events(record)]
    )


def test_blob_uploads_alone_yield_no_events(registry: Registry):
    with TestClient(create_app(registry), follow_redirects=False) as client:
        from oci import push_blob

        push_blob(client, REPO, b"x" * 4096, mode="post")
        push_blob(client, REPO, b"y" * 4096, mode="patch", chunk=1024)
    records = stream_records(registry)
    kinds = {r["dynamodb"]["Keys"]["PK"]["S"].split("#")[0] for r in records}
    assert {"UPLOAD", "OPEN_UPLOADS", "BLOB", "REPO"} <= kinds
    assert [e for r in records for e in registry_events(r)] == []
    assert not any(is_registry_item(r["dynamodb"]["Keys"]) for r in records)


# --- the sample records in events/stream ------------------------------------------------

# name -> (event name, SK prefix, which occurrence): the records the samples are taken from.
SAMPLE_RECORDS = {
    "01-manifest-pushed": ("INSERT", "MANIFEST#", 0),
    "02-repository-created": ("INSERT", "REPO#", 0),
    "03-tag-created": ("INSERT", "TAG#", 0),
    "04-tag-moved": ("MODIFY", "TAG#", 0),
    "05-artifact-pushed": ("INSERT", "MANIFEST#", 2),
    "06-tag-deleted": ("REMOVE", "TAG#", 0),
    "07-manifest-deleted": ("REMOVE", "MANIFEST#", 0),
    "08-manifest-pushed-again": ("MODIFY", "MANIFEST#", 0),
    "09-blob-linked": ("INSERT", "BLOB#", 0),
}
# What differs between two runs of the scenario. moto's SizeBytes counts the record's own
# serialisation (its times included), so it wobbles by a byte.
# A blob's S3 key is named after the upload that wrote it (a fresh id each run).
# A catalog entry's push_id is a fresh uuid per push; pushed_ms is the push's time.
VOLATILE_RECORD = (
    "eventID",
    "SequenceNumber",
    "ApproximateCreationDateTime",
    "SizeBytes",
    "s3_key",
    "push_id",
    "pushed_ms",
    # used_ms: when a link or blob was last used (the garbage collector's stamp, issue 12).
    "used_ms",
)
VOLATILE_EVENT = ("id", "time", "sequenceNumber")


def _pick(records: list[dict], event_name: str, sk_prefix: str, occurrence: int) -> dict:
    matching = [
        r
        for r in records
        if r["eventName"] == event_name and r["dynamodb"]["Keys"]["SK"]["S"].startswith(sk_prefix)
    ]
    return matching[occurrence]


def _stable(value, volatile):
    if isinstance(value, dict):
        return {k: ("*" if k in volatile else _stable(v, volatile)) for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v, volatile) for v in value]
    return value


def _sample_paths(name: str) -> tuple[Path, Path]:
    return SAMPLES / "stream" / f"{name}.json", SAMPLES / "registry" / f"{name}.json"


def test_sample_records_are_current(registry: Registry):
    """The samples are this scenario's records; only ids, sequence numbers and times differ."""
    records, _ = run_scenario(registry)
    for name, selector in SAMPLE_RECORDS.items():
        record = _pick(records, *selector)
        lambda_event = {"Records": [record]}
        events = [event.to_dict() for event in registry_events(record)]
        record_path, events_path = _sample_paths(name)
        if WRITE_SAMPLES:
            record_path.parent.mkdir(exist_ok=True)
            events_path.parent.mkdir(exist_ok=True)
            record_path.write_text(json.dumps(lambda_event, indent=2) + "\n")
            events_path.write_text(json.dumps(events, indent=2) + "\n")
            continue
        assert _stable(json.loads(record_path.read_text()), VOLATILE_RECORD) == _stable(
            lambda_event, VOLATILE_RECORD
        ), f"{record_path} is stale: rerun with SKYPORT_WRITE_EVENT_SAMPLES=1"
        assert _stable(json.loads(events_path.read_text()), VOLATILE_EVENT) == _stable(events, VOLATILE_EVENT)


@pytest.mark.parametrize("name", sorted(SAMPLE_RECORDS))
def test_each_sample_record_converts_to_its_documented_events(name: str):
    record_path, events_path = _sample_paths(name)
    (record,) = json.loads(record_path.read_text())["Records"]
    assert [event.to_dict() for event in registry_events(record)] == json.loads(events_path.read_text())


def test_the_filter_criteria_are_lambda_shaped():
    assert set(EVENT_SOURCE_FILTER) == {"Filters"}
    assert 1 <= len(EVENT_SOURCE_FILTER["Filters"]) <= 5  # Lambda's default filters per mapping
    for entry in EVENT_SOURCE_FILTER["Filters"]:
        assert set(entry) == {"Pattern"} and isinstance(json.loads(entry["Pattern"]), dict)
        assert len(entry["Pattern"]) <= 4096  # the API's limit on one pattern
