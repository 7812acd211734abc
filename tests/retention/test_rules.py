"""Each retention rule kind with real ages (images pushed and pulled over HTTP, evaluated
"as of" a later time), how rules and conditions combine, what is never deleted (children
of a kept index, referrers of a kept subject, manifests an immutable tag names, the
grace), the race with a push, and the events a run's deletes emit."""

from __future__ import annotations

import time

from oci import make_artifact, make_image, make_index, push_image, put_manifest
from skyport.events import registry_events
from stream_reader import stream_records

from .conftest import DAY_MS, HOUR_MS, catalog, manifest_digests, pull, pull_records, push, tag_names


def now_ms() -> int:
    return int(time.time() * 1000)


def outcome(report, repository: str) -> dict[str, tuple[bool, list[str], str | None]]:
    plan = next(plan for plan in report.repositories if plan.repository == repository)
    return {d.digest: (d.delete, d.reasons, d.outcome) for d in plan.decisions}


def test_keep_last_keeps_the_newest_n_and_only_where_the_pattern_matches(app_client, registry, retention):
    digests = [push(app_client, "team/app", f"v{i}") for i in range(4)]
    untagged = push(app_client, "team/app")  # the newest, but untagged: not counted
    elsewhere = push(app_client, "other/app", "v0")
    retention.add("team/*", keep_last="2")
    report = retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    assert manifest_digests(registry, "team/app") == set(digests[2:])
    assert "(untagged, a child or a referrer: not counted)" in outcome(report, "team/app")[untagged][1][0]
    assert tag_names(registry, "team/app") == {"v2", "v3"}
    assert manifest_digests(registry, "other/app") == {elsewhere}
    decided = outcome(report, "team/app")
    assert decided[digests[0]][0] and decided[digests[0]][2] == "deleted"
    assert "not among the newest 2 (#4)" in decided[digests[0]][1][0]
    assert "among the newest 2 (#1)" in decided[digests[3]][1][0]
    assert [plan.repository for plan in report.repositories] == ["team/app"]


def test_keep_pushed_within(app_client, registry, retention):
    older = push(app_client, "team/app", "old")
    time.sleep(0.3)
    newer = push(app_client, "team/app", "new")
    retention.add("team/app", keep_pushed_within="2h")
    preview = retention.run(dry_run=True)
    pushed = {d.digest: d.pushed_ms for d in preview.repositories[0].decisions}
    between = 2 * HOUR_MS + (pushed[older] + pushed[newer]) // 2
    retention.run(dry_run=False, as_of_ms=between)
    assert manifest_digests(registry, "team/app") == {newer}


def test_keep_pulled_within(app_client, registry, retention):
    first, pulled, third = (push(app_client, "team/app", tag) for tag in ("a", "b", "c"))
    pull(app_client, "team/app", "b")
    retention.add("team/app", keep_pulled_within="2d")
    preview = retention.run(dry_run=True, as_of_ms=now_ms() + 3 * DAY_MS)
    assert all(delete for delete, _, _ in outcome(preview, "team/app").values())  # 3 days: too long ago
    report = retention.run(dry_run=False, as_of_ms=now_ms() + DAY_MS)
    assert manifest_digests(registry, "team/app") == {pulled}
    assert "pulled within 2d" in outcome(report, "team/app")[pulled][1][0]
    assert "not pulled within 2d" in outcome(report, "team/app")[first][1][0]
    assert third not in manifest_digests(registry, "team/app")


def test_keep_tags(app_client, registry, retention):
    kept = {push(app_client, "team/app", tag) for tag in ("v1.0", "v1.1")}
    for tag in ("dev-1", "dev-2"):
        push(app_client, "team/app", tag)
    retention.add("team/app", keep_tags=["v*"])
    retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    assert manifest_digests(registry, "team/app") == kept
    assert tag_names(registry, "team/app") == {"v1.0", "v1.1"}


def test_untagged_after_touches_only_untagged_manifests(app_client, registry, retention):
    overwritten = push(app_client, "team/app", "latest")
    current = push(app_client, "team/app", "latest")  # the tag moves: the first is untagged
    by_digest = push(app_client, "team/app")
    stable = push(app_client, "team/app", "stable")
    retention.add("team/app", untagged_after="1d")
    retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)  # untagged for less than 1d
    assert manifest_digests(registry, "team/app") == {overwritten, current, by_digest, stable}
    report = retention.run(dry_run=False, as_of_ms=now_ms() + 2 * DAY_MS)
    assert manifest_digests(registry, "team/app") == {current, stable}
    assert "untagged for more than 1d" in outcome(report, "team/app")[overwritten][1][0]


def test_rules_combine_kept_if_any_keeps(app_client, registry, retention):
    release = push(app_client, "team/app", "release-1")
    middle = push(app_client, "team/app", "build-2")
    newest = push(app_client, "team/app", "build-3")
    retention.add("team/*", keep_last="1")
    retention.add("team/app", keep_tags=["release-*"])
    retention.add("*", untagged_after="1d")  # touches no tagged manifest
    report = retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    assert manifest_digests(registry, "team/app") == {release, newest}
    decided = outcome(report, "team/app")
    assert len(decided[middle][1]) == 2  # both rules that touch it say why it goes
    assert any("release-1 matches release-*" in reason for reason in decided[release][1])


def test_children_referrers_and_immutable_tags_are_kept(app_client, registry, retention):
    immutability = registry.immutability
    immutability.add("team/app", ["latest", "old"])  # v0 is immutable, latest and old are not
    old = push(app_client, "team/app", "old")
    pinned = push(app_client, "team/app", "v0")
    children = [make_image(layer_sizes=(32,)) for _ in range(2)]
    for child in children:
        push_image(app_client, "team/app", child)
    body, media_type = make_index(children)
    response = put_manifest(app_client, "team/app", "latest", body, media_type)
    index = response.headers["Docker-Content-Digest"]
    signature = push_image(app_client, "team/app", make_artifact(body, subject_type=media_type))
    child_sbom = push_image(app_client, "team/app", make_artifact(children[0].manifest))
    lone = push(app_client, "team/app")  # untagged, no parent: counted, and not the newest
    push(app_client, "team/app", "latest")  # latest moves on: the index is now untagged too...
    # ...so re-tag it: the index is the newest image again, by a later push.
    assert put_manifest(app_client, "team/app", "latest", body, media_type).status_code == 201
    retention.add("team/app", keep_last="1")
    report = retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    decided = outcome(report, "team/app")
    left = manifest_digests(registry, "team/app")
    assert {index, pinned, signature, child_sbom, *(c.digest for c in children)} <= left
    assert old not in left and lone not in left
    assert decided[pinned][1] == ["immutable: tag v0 (rule " + immutability.list_rules()[0].id + ")"]
    assert decided[children[0].digest][1] == [f"child of kept index {index}"]
    assert decided[signature][1] == [f"referrer of kept manifest {index}"]
    assert decided[child_sbom][1] == [f"referrer of kept manifest {children[0].digest}"]


def test_the_grace_keeps_what_was_just_pushed(app_client, registry, retention):
    digest = push(app_client, "team/app")
    retention.add("team/app", keep_tags=["never"])
    report = retention.run(dry_run=False)
    assert manifest_digests(registry, "team/app") == {digest}
    assert "within the 1h grace" in outcome(report, "team/app")[digest][1][0]


def test_a_push_between_evaluation_and_delete_wins(app_client, registry, retention):
    doomed = push(app_client, "team/app", "v1")
    image_again = app_client.get(f"/v2/team/app/manifests/{doomed}").content
    also_doomed = push(app_client, "team/app", "v2")
    push(app_client, "team/app", "v3")
    retention.add("team/app", keep_last="1")
    report = retention.run(dry_run=True, as_of_ms=now_ms() + 2 * HOUR_MS)
    plan = report.repositories[0]
    assert {d.digest for d in plan.deletions} == {doomed, also_doomed}
    # CI tags the old image again after the evaluation, before the deletes.
    response = put_manifest(
        app_client, "team/app", "hotfix", image_again, "application/vnd.oci.image.manifest.v1+json"
    )
    assert response.status_code == 201
    retention.apply(plan)
    decided = {d.digest: d.outcome for d in plan.decisions}
    assert decided[doomed].startswith("skipped: pushed again")
    assert decided[also_doomed] == "deleted"
    assert manifest_digests(registry, "team/app") >= {doomed}
    assert {"v1", "hotfix"} <= tag_names(registry, "team/app")
    assert app_client.get("/v2/team/app/manifests/hotfix").status_code == 200


def test_deletions_emit_the_usual_events_and_the_repository_leaves_the_catalog(
    app_client, registry, retention
):
    digest = push(app_client, "gone/app", "v1")
    pull(app_client, "gone/app", "v1")
    retention.add("gone/*", keep_tags=["release-*"])
    retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    assert manifest_digests(registry, "gone/app") == set() and "gone/app" not in catalog(registry)
    assert pull_records(registry, "gone/app") == {}
    events = [e for record in stream_records(registry) for e in registry_events(record)]
    deleted = [(e.type, e.digest, e.tag) for e in events if e.type.endswith(".deleted")]
    assert ("manifest.deleted", digest) in [(t, d) for t, d, _ in deleted]
    assert any(t == "tag.deleted" and tag == "v1" for t, _, tag in deleted)
    assert any(t == "repository.deleted" for t, _, _ in deleted)


def test_stray_pull_records_are_removed_when_the_repository_is_evaluated(app_client, registry, retention):
    kept = push(app_client, "team/app", "v1")
    ghost = "sha256:" + "0" * 64
    registry.clients.dynamodb.put_item(
        TableName=registry.settings.table,
        Item={"PK": {"S": "REPO#team/app"}, "SK": {"S": f"PULL#{ghost}"}, "last_pulled_ms": {"N": "1"}},
    )
    retention.add("team/app", keep_last="5")
    retention.run(dry_run=True)
    assert ghost in pull_records(registry, "team/app")  # a dry run changes nothing
    retention.run(dry_run=False)
    assert pull_records(registry, "team/app") == {}
    assert manifest_digests(registry, "team/app") == {kept}


def test_an_unreadable_index_keeps_its_whole_repository(app_client, registry, settings, aws_clients):
    from dataclasses import replace

    from skyport.registry import Registry

    children = [make_image(layer_sizes=(32,)) for _ in range(2)]
    for child in children:
        push_image(app_client, "big/app", child)
    body, media_type = make_index(children, extra={"annotations": {"padding": "x" * 200_000}})
    assert put_manifest(app_client, "big/app", "v1", body, media_type).status_code == 201  # body in S3
    old = push(app_client, "big/app", "old")
    # A run whose S3 reads fail (here: a bucket that does not exist).
    blind = Registry(replace(settings, bucket=f"{settings.bucket}-missing"), clients=aws_clients).retention
    blind.add("big/app", keep_tags=["v1"])
    report = blind.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    decided = outcome(report, "big/app")
    assert not any(delete for delete, _, _ in decided.values())
    assert decided[old][1][0].startswith("index ") and "unreadable (" in decided[old][1][0]
    assert {old, *(c.digest for c in children)} <= manifest_digests(registry, "big/app")
    # With S3 readable, the index keeps its children and the old image goes.
    registry.retention.run(dry_run=False, as_of_ms=now_ms() + 2 * HOUR_MS)
    assert old not in manifest_digests(registry, "big/app")
    assert {c.digest for c in children} <= manifest_digests(registry, "big/app")
