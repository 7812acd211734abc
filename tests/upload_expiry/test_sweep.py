"""The sweep (skyport/upload_expiry.py) on sessions made over HTTP: expired sessions go
with their multipart upload, tail and quota entry; leftovers no session names go past the
grace period; a dry run changes nothing; a leased session and a live one are never
touched; a deadline stops the sweep and the next run goes on."""

from __future__ import annotations

import time

from oci import MiB
from skyport.storage import keys

from .conftest import (
    REPO,
    abandon,
    crash_leftovers,
    multipart_uploads,
    objects,
    session_item,
    wait_until_expired,
)


def quota_entries(registry) -> dict:
    item = registry.clients.dynamodb.get_item(
        TableName=registry.settings.table, Key=keys.open_uploads(f"repository:{REPO}"), ConsistentRead=True
    ).get("Item")
    return item["open_uploads"]["M"] if item else {}


def test_an_expired_session_goes_with_its_multipart_upload_tail_and_quota_entry(
    registry, sweeper, short_client, storage
):
    upload_id, size = abandon(short_client)
    session = session_item(registry, upload_id)
    assert "multipart_id" in session and "tail_key" in session
    assert upload_id in quota_entries(registry)
    wait_until_expired()
    before = storage.snapshot()

    dry = sweeper.upload_expiry.sweep(dry_run=True)

    assert storage.snapshot() == before  # a dry run removes nothing
    assert (dry.sessions, dry.multipart_uploads, dry.tail_objects) == (1, 0, 0)
    assert dry.bytes == size and dry.complete and dry.dry_run
    assert [(r.kind, r.name, r.repository) for r in dry.removed] == [("session", upload_id, REPO)]

    report = sweeper.upload_expiry.sweep()

    assert (report.sessions, report.multipart_uploads, report.tail_objects, report.bytes) == (1, 0, 0, size)
    assert report.errors == 0 and report.complete
    assert session_item(registry, upload_id) is None
    assert multipart_uploads(registry) == []
    assert objects(registry, "uploads/") == []
    assert upload_id not in quota_entries(registry)
    # Nothing is left for a second run.
    again = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert (again.sessions, again.multipart_uploads, again.tail_objects) == (0, 0, 0)


def test_a_session_that_has_not_expired_stays(registry, sweeper, app_client, storage):
    upload_id, _ = abandon(app_client)  # abandoned, but it lives a week
    before = storage.snapshot()
    report = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert (report.sessions, report.multipart_uploads, report.tail_objects) == (0, 0, 0)
    assert report.kept == 2  # its multipart upload and its tail: a stored session names them
    assert storage.snapshot() == before
    assert session_item(registry, upload_id) is not None


def test_leftovers_no_session_names_go_only_past_the_grace_period(registry, sweeper, storage):
    key, tail = crash_leftovers(registry)
    before = storage.snapshot()

    young = sweeper.upload_expiry.sweep(grace_seconds=3600)
    assert (young.multipart_uploads, young.tail_objects) == (0, 0)
    assert storage.snapshot() == before

    dry = sweeper.upload_expiry.sweep(dry_run=True, grace_seconds=0)
    assert (dry.multipart_uploads, dry.tail_objects, dry.bytes) == (1, 1, 1500)
    assert storage.snapshot() == before

    report = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert (report.sessions, report.multipart_uploads, report.tail_objects, report.bytes) == (0, 1, 1, 1500)
    assert {(r.kind, r.name) for r in report.removed} == {("multipart_upload", key), ("tail_object", tail)}
    assert multipart_uploads(registry) == [] and objects(registry, "uploads/") == []


def test_a_blob_and_other_objects_are_never_the_sweeps(registry, sweeper, app_client):
    """Completed objects under blobs/ are GC's; keys no upload wrote are left alone."""
    from oci import push_blob

    digest = push_blob(app_client, REPO, b"z" * (6 * MiB), mode="chunks", chunk=5 * MiB)
    s3, bucket = registry.clients.s3, registry.settings.bucket
    s3.put_object(Bucket=bucket, Key="uploads/stray", Body=b"not a tail")
    blobs_before = objects(registry, "blobs/")
    report = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert (report.sessions, report.multipart_uploads, report.tail_objects) == (0, 0, 0)
    assert objects(registry, "blobs/") == blobs_before and len(blobs_before) == 1
    assert app_client.head(f"/v2/{REPO}/blobs/{digest}").status_code == 200


def test_an_expired_session_a_request_still_leases_is_kept(registry, sweeper, short_client, storage):
    upload_id, _ = abandon(short_client)
    wait_until_expired()
    # Stands in for a request that claimed the session just before it expired and is still
    # writing: its lease runs another minute (written with boto3, as claim would).
    registry.clients.dynamodb.update_item(
        TableName=registry.settings.table,
        Key=keys.upload(upload_id),
        UpdateExpression="SET lease_token = :t, lease_until = :u",
        ExpressionAttributeValues={":t": {"S": "in-flight"}, ":u": {"N": str(int(time.time()) + 60)}},
    )
    before = storage.snapshot()

    report = sweeper.upload_expiry.sweep(grace_seconds=0)

    assert (report.sessions, report.multipart_uploads, report.tail_objects) == (0, 0, 0)
    assert report.kept >= 1
    assert storage.snapshot() == before


def test_a_deadline_stops_the_sweep_and_the_next_run_goes_on(registry, sweeper, short_client):
    ids = [abandon(short_client)[0] for _ in range(2)]
    leftovers = [crash_leftovers(registry) for _ in range(2)]
    wait_until_expired()

    stopped = sweeper.upload_expiry.sweep(grace_seconds=0, deadline=time.time() - 1)
    assert not stopped.complete
    assert (stopped.sessions, stopped.multipart_uploads, stopped.tail_objects) == (0, 0, 0)
    assert all(session_item(registry, upload_id) for upload_id in ids)

    report = sweeper.upload_expiry.sweep(grace_seconds=0)
    assert report.complete
    assert (report.sessions, report.multipart_uploads, report.tail_objects) == (2, 2, 2)
    assert {key for key, _ in leftovers} <= {r.name for r in report.removed}
    assert multipart_uploads(registry) == [] and objects(registry, "uploads/") == []
