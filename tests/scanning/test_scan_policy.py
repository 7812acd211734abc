"""Scan policies (issue 14; skyport/scan_policy.py): a covered repository's image whose report
has findings at or above the policy's severity is refused on GET and HEAD with DENIED and
the count; an allow list lets it through; another repository is untouched; removing the
policy serves it again; an index and artifacts are served, an unscanned image too unless
the policy requires a scan. No policy covering a repository costs a pull nothing.

Over HTTP through every ``client`` flavour (policies added before the client's first
manifest GET: the [lambda] flavour's Registry has caches of its own), and through the
CLI on a served registry's table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from cli_support import run_cli as run
from cli_support import write_served_state
from oci import OCI_INDEX, assert_error, descriptor, make_image, push_image, put_manifest
from skyport.errors import Denied
from skyport.registry import Registry
from skyport.scan_policy import InvalidPolicy, PolicyNotFound
from skyport.storage import keys
from skyport_api.app import create_app
from starlette.testclient import TestClient

from scanning.using_support import push_and_scan, worst_severity

REPO = "team/app"
OTHER = "other/app"


@pytest.fixture
def own_client(registry: Registry) -> Iterator[TestClient]:
    """A client on the ASGI app of ``registry`` itself, with no policy cache (TTL 0): a
    policy added or removed through ``registry`` applies at the next request."""
    fresh = Registry(replace(registry.settings, scan_policy_cache_seconds=0), clients=registry.clients)
    with TestClient(create_app(fresh), follow_redirects=False) as client:
        yield client


def policy_items(registry: Registry) -> list[dict]:
    return registry.clients.dynamodb.query(
        TableName=registry.settings.table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.SCAN_POLICY}},
    )["Items"]


# --- enforcement ----------------------------------------------------------------------------


def test_a_policy_refuses_a_vulnerable_image_with_denied_and_the_count(client, registry, storage):
    digest, report = push_and_scan(client, registry, REPO)
    push_and_scan(client, registry, OTHER)
    severity = worst_severity(report)
    counted = report.at_or_above(severity)
    registry.scan_policies.add("team/*", severity)
    before = storage.snapshot()

    for reference in ("1.0", digest):
        refused = client.get(f"/v2/{REPO}/manifests/{reference}")
        error = assert_error(refused, 403, "DENIED")
        detail = error["detail"]
        assert detail["reason"] == "vulnerable image"
        assert (detail["repository"], detail["digest"]) == (REPO, digest)
        assert detail["findings"] == len(counted) and detail["severity"] == severity
        assert sum(detail["counts"].values()) == len(counted)
        assert set(detail["ids"]) <= {finding.id for finding in counted} and detail["ids"]
        assert detail["policy"] == {
            "repositories": "team/*",
            "severity": severity,
            "allow": [],
            "requireScan": False,
        }
        assert f"{len(counted)} vulnerability finding" in error["message"] and severity in error["message"]
        # HEAD too: a 200 there would send docker into a pull the GET then refuses.
        assert client.head(f"/v2/{REPO}/manifests/{reference}").status_code == 403
    # Refusing wrote nothing (no pull recorded, nothing else).
    assert storage.snapshot() == before
    # Another repository, not covered, with the same image: served.
    assert client.get(f"/v2/{OTHER}/manifests/1.0").status_code == 200
    assert client.head(f"/v2/{OTHER}/manifests/1.0").status_code == 200


def test_each_threshold_counts_the_findings_at_or_above_it(own_client, registry):
    _, report = push_and_scan(own_client, registry, REPO)
    registry.scan_policies.add(REPO, "LOW")
    for level in ("LOW", "MEDIUM", "HIGH", "CRITICAL"):
        registry.scan_policies.add(REPO, level, replace=True)
        counted = report.at_or_above(level)
        response = own_client.get(f"/v2/{REPO}/manifests/1.0")
        if not counted:
            assert response.status_code == 200, (level, response.text)
            continue
        detail = assert_error(response, 403, "DENIED")["detail"]
        assert (detail["findings"], detail["severity"]) == (len(counted), level)
        # UNKNOWN severities count for no level (scanning/model.py).
        assert "UNKNOWN" not in detail["counts"]


def test_an_allow_list_lets_the_image_through(client, registry):
    digest, report = push_and_scan(client, registry, REPO)
    severity = worst_severity(report)
    counted = report.at_or_above(severity)
    # Allowed by id, or by an alias (a CVE id for a GHSA or DSA record) where there is one.
    allowed = [finding.aliases[0] if finding.aliases else finding.id for finding in counted]
    registry.scan_policies.add("team/*", severity, allow=allowed)
    response = client.get(f"/v2/{REPO}/manifests/1.0")
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest


def test_allowing_some_ids_counts_the_rest(own_client, registry):
    digest, report = push_and_scan(own_client, registry, REPO)
    counted = report.at_or_above("LOW")
    if len({finding.id for finding in counted}) < 2:
        pytest.skip("needs two findings of a known severity")
    first = counted[0].id
    registry.scan_policies.add(REPO, "LOW", allow=[first])
    error = assert_error(own_client.get(f"/v2/{REPO}/manifests/1.0"), 403, "DENIED")
    assert error["detail"]["findings"] == len(
        [f for f in counted if f.id != first and first not in f.aliases]
    )
    assert first not in error["detail"]["ids"]


def test_removing_the_policy_serves_the_image_again(own_client, registry):
    push_and_scan(own_client, registry, REPO)
    registry.scan_policies.add(REPO, "LOW")
    assert_error(own_client.get(f"/v2/{REPO}/manifests/1.0"), 403, "DENIED")
    registry.scan_policies.remove(REPO)
    assert own_client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200


def test_an_index_and_the_scans_own_artifacts_are_served_its_platform_image_refused(client, registry):
    digest, report = push_and_scan(client, registry, REPO)
    _, child = registry.manifests.fetch(REPO, digest)  # not over client: its policy cache is still empty
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(
                    "application/vnd.oci.image.manifest.v1+json",
                    child,
                    platform={"os": "linux", "architecture": "amd64"},
                )
            ],
        }
    ).encode()
    assert put_manifest(client, REPO, "multi", index, OCI_INDEX).status_code == 201
    registry.scan_policies.add("team/*", "LOW", require_scan=True)
    # The index holds no software: served; docker then asks for the platform image, refused.
    assert client.get(f"/v2/{REPO}/manifests/multi").status_code == 200
    assert_error(client.get(f"/v2/{REPO}/manifests/{digest}"), 403, "DENIED")
    # The SBOM and the report (referrers of the image) are artifacts, not scanned: served.
    referrers = client.get(f"/v2/{REPO}/referrers/{digest}").json()["manifests"]
    assert len(referrers) >= 2
    for referrer in referrers:
        assert client.get(f"/v2/{REPO}/manifests/{referrer['digest']}").status_code == 200


def test_an_unscanned_image_is_served_unless_the_policy_requires_a_scan(own_client, registry):
    image = make_image()
    push_image(own_client, REPO, image, "raw")
    registry.scan_policies.add(REPO, "LOW")
    assert own_client.get(f"/v2/{REPO}/manifests/raw").status_code == 200
    registry.scan_policies.add(REPO, "LOW", require_scan=True, replace=True)
    error = assert_error(own_client.get(f"/v2/{REPO}/manifests/raw"), 403, "DENIED")
    assert error["detail"]["reason"] == "not scanned yet" and error["detail"]["digest"] == image.digest
    assert "not been scanned yet" in error["message"]
    assert own_client.head(f"/v2/{REPO}/manifests/raw").status_code == 403


def test_deleting_the_report_does_not_free_a_refused_image(own_client, registry, storage):
    """The report is a referrer a user with delete permission can delete; the image's scan
    record still names it, so the image stays refused (fail closed) until a new scan."""
    digest, report = push_and_scan(own_client, registry, REPO)
    registry.scan_policies.add(REPO, worst_severity(report))
    assert_error(own_client.get(f"/v2/{REPO}/manifests/1.0"), 403, "DENIED")
    record = registry.scanning.record(REPO, digest)
    assert own_client.delete(f"/v2/{REPO}/manifests/{record.report_digest}").status_code == 202
    for reference in ("1.0", digest):
        error = assert_error(own_client.get(f"/v2/{REPO}/manifests/{reference}"), 403, "DENIED")
        assert error["detail"]["reason"] == "scan report deleted"
        assert error["detail"]["report"] == record.report_digest and "skyport scan" in error["message"]
        assert own_client.head(f"/v2/{REPO}/manifests/{reference}").status_code == 403
    # A new scan writes a new report: refused again for its findings, not for a missing report.
    registry.scanning.scan(REPO, digest, force=True)
    error = assert_error(own_client.get(f"/v2/{REPO}/manifests/1.0"), 403, "DENIED")
    assert error["detail"]["reason"] == "vulnerable image"
    # Under a policy its findings pass, the image is served again.
    registry.scan_policies.add(REPO, "CRITICAL", allow=[f.id for f in report.findings], replace=True)
    assert own_client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200


# --- what a policy costs ----------------------------------------------------------------------


class Calls:
    """AWS operations a registry's clients make (botocore's before-call: nothing replaced)."""

    def __init__(self, registry: Registry) -> None:
        self.operations: list[str] = []
        self._clients = (registry.clients.dynamodb, registry.clients.s3)

    def __call__(self, model, **_) -> None:
        self.operations.append(model.name)

    def __enter__(self) -> Calls:
        for client in self._clients:
            client.meta.events.register("before-call", self)
        return self

    def __exit__(self, *_) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call", self)

    def take(self) -> list[str]:
        taken, self.operations = self.operations, []
        return taken


def _counting_registry(registry: Registry) -> Registry:
    """A registry of its own clients (the session's are shared by every test), so only its
    calls are counted."""
    return Registry(registry.settings)


def test_no_policy_covering_the_repository_costs_a_pull_no_call(registry):
    counted = _counting_registry(registry)
    with TestClient(create_app(counted), follow_redirects=False) as client, Calls(counted) as calls:
        push_image(client, REPO, make_image(), "1.0")
        for setup in (counted.scan_policies.policies, counted.immutability.rules, counted.cache_rules.rules):
            setup()  # each process reads its rule snapshots once per TTL, whatever it serves
        # The first GET of a manifest in a process also records the pull (skyport/pulls.py).
        assert client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200
        calls.take()
        assert client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200
        baseline = calls.take()
        assert baseline == ["GetItem"], baseline  # the tag item holds the manifest
        counted.scan_policies.add("other/*", "LOW")  # covers another repository only
        counted.scan_policies.policies()
        calls.take()
        assert client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200
        assert client.head(f"/v2/{REPO}/manifests/1.0").status_code == 200
        assert calls.take() == baseline * 2


def test_a_covering_policy_costs_one_report_lookup_per_ttl(registry):
    counted = _counting_registry(registry)
    with TestClient(create_app(counted), follow_redirects=False) as client, Calls(counted) as calls:
        digest, _ = push_and_scan(client, counted, REPO)
        counted.scan_policies.add(REPO, "CRITICAL", allow=["none"])
        counted.scan_policies.policies()
        calls.take()
        client.get(f"/v2/{REPO}/manifests/1.0")
        first = calls.take()
        assert len(first) > 1  # the tag, then the report (the scan record, its artifact)
        for _ in range(3):
            client.get(f"/v2/{REPO}/manifests/1.0")
            client.head(f"/v2/{REPO}/manifests/{digest}")
            assert calls.take() == ["GetItem", "GetItem"]  # as with no policy: the report is cached


# --- administration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "severity", "allow", "refused"),
    [
        ("Team/*", "HIGH", (), "invalid repository pattern"),
        ("team/**", "HIGH", (), "invalid repository pattern"),
        ("", "HIGH", (), "invalid repository pattern"),
        ("team/*", "UNKNOWN", (), "invalid severity"),
        ("team/*", "SEVERE", (), "invalid severity"),
        ("team/*", "hıgh", (), "invalid severity"),  # dotless i: upper() would make HIGH
        ("team/*", "HIGH", ("CVE-2021-\u0664\u0664228",), "invalid vulnerability id"),  # Arabic digits
        ("team/*", "HIGH", ("x" * 200,), "invalid vulnerability id"),
        ("team/*", "HIGH", ("CVE-1;rm",), "invalid vulnerability id"),
        ("team/*", "HIGH", tuple(f"CVE-2020-{n}" for n in range(201)), "at most 200"),
    ],
)
def test_invalid_policies_are_refused_and_nothing_is_stored(registry, pattern, severity, allow, refused):
    with pytest.raises(InvalidPolicy, match=refused):
        registry.scan_policies.add(pattern, severity, allow)
    assert policy_items(registry) == []


def test_one_policy_per_pattern_replace_and_remove(registry):
    policy = registry.scan_policies.add("team/*", "high", ["CVE-2021-44228, GHSA-jfh8-c2jp-5v3q"])
    assert (policy.severity, policy.allow) == ("HIGH", ("CVE-2021-44228", "GHSA-jfh8-c2jp-5v3q"))
    with pytest.raises(InvalidPolicy, match="exists"):
        registry.scan_policies.add("team/*", "LOW")
    with pytest.raises(PolicyNotFound, match="to replace"):
        registry.scan_policies.add("nothing/*", "LOW", replace=True)
    registry.scan_policies.add("team/*", "CRITICAL", replace=True)
    assert [p.severity for p in registry.scan_policies.list_policies()] == ["CRITICAL"]
    with pytest.raises(PolicyNotFound):
        registry.scan_policies.remove("other/*")
    with pytest.raises(PolicyNotFound):
        registry.scan_policies.remove("../..\n")
    assert registry.scan_policies.remove("team/*").severity == "CRITICAL"
    assert policy_items(registry) == []


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["scan-policy"], ["scan-policy", "add"], ["scan-policy", "list"]])
def test_every_scan_policy_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: skyport scan-policy" in out


def test_cli_add_list_remove_on_the_served_registry(capsys, registry, tmp_path, monkeypatch):
    write_served_state(registry.settings, tmp_path, monkeypatch)
    code, out, err = run(
        capsys, "scan-policy", "add", "team/*", "--severity", "HIGH", "--allow", "CVE-2021-44228", "GHSA-x"
    )
    assert code == 0, err
    assert out.startswith(
        "scan policy added: images of team/* with findings at or above HIGH are refused, "
        "allowing CVE-2021-44228, GHSA-x\n"
    )
    assert "within 30 s" in out
    code, out, err = run(capsys, "scan-policy", "list")
    assert (code, out, err) == (0, "team/*\tHIGH\tallow: CVE-2021-44228,GHSA-x\tunscanned: served\n", "")
    code, out, _ = run(capsys, "scan-policy", "list", "--json")
    [listed] = json.loads(out)
    assert {k: v for k, v in listed.items() if k != "created_ms"} == {
        "repositories": "team/*",
        "severity": "HIGH",
        "allow": ["CVE-2021-44228", "GHSA-x"],
        "require_scan": False,
    }
    code, out, err = run(capsys, "scan-policy", "add", "team/*", "--severity", "LOW")
    assert code == 1 and out == "" and err.count("\n") == 1 and "--replace" in err
    code, out, err = run(
        capsys, "scan-policy", "add", "team/*", "--severity", "LOW", "--require-scan", "--replace"
    )
    assert code == 0 and out.startswith("scan policy replaced") and "not scanned yet are refused" in out, err
    code, out, err = run(capsys, "scan-policy", "remove", "team/*")
    assert code == 0 and out.startswith("scan policy for team/* removed"), err
    code, out, err = run(capsys, "scan-policy", "remove", "team/*")
    assert code == 1 and "no scan policy for team/*" in err and err.count("\n") == 1
    assert policy_items(registry) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "Team/App", "--severity", "HIGH"],
        ["add", "team/*", "--severity", "NONE"],
        ["add", "team/*", "--severity", "HIGH", "--allow", "CVE\u200b-1"],  # zero-width space
        ["add", "team/\u0661", "--severity", "HIGH"],
    ],
)
def test_cli_refuses_hostile_input_in_one_line(capsys, registry, tmp_path, monkeypatch, argv):
    write_served_state(registry.settings, tmp_path, monkeypatch)
    code, out, err = run(capsys, "scan-policy", *argv)
    assert code == 1 and out == "" and err.startswith("skyport scan-policy add: ") and err.count("\n") == 1
    assert policy_items(registry) == []


def test_cli_policy_enforced_by_the_served_registry_then_removed(
    capsys, own_client, registry, tmp_path, monkeypatch
):
    digest, report = push_and_scan(own_client, registry, REPO)
    write_served_state(registry.settings, tmp_path, monkeypatch)
    severity = worst_severity(report)
    code, _, err = run(capsys, "scan-policy", "add", "team/*", "--severity", severity)
    assert code == 0, err
    error = assert_error(own_client.get(f"/v2/{REPO}/manifests/1.0"), 403, "DENIED")
    assert error["detail"]["findings"] == len(report.at_or_above(severity))
    ids = sorted({finding.id for finding in report.at_or_above(severity)})
    code, _, err = run(
        capsys, "scan-policy", "add", "team/*", "--severity", severity, "--allow", ",".join(ids), "--replace"
    )
    assert code == 0, err
    assert own_client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200
    code, _, err = run(capsys, "scan-policy", "add", "team/*", "--severity", severity, "--replace")
    assert code == 0, err
    assert own_client.head(f"/v2/{REPO}/manifests/{digest}").status_code == 403
    code, _, err = run(capsys, "scan-policy", "remove", "team/*")
    assert code == 0, err
    assert own_client.get(f"/v2/{REPO}/manifests/1.0").status_code == 200


@pytest.mark.parametrize("value", ["-1", "3601", "\u0663\u0660", "30s", " 30"])
def test_the_cache_setting_is_checked_at_start(value):
    from skyport.config import Settings

    with pytest.raises(ValueError, match="SKYPORT_SCAN_POLICY_CACHE_SECONDS"):
        Settings.from_env(
            {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t", "SKYPORT_SCAN_POLICY_CACHE_SECONDS": value}
        )
    assert Settings.from_env({"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t"}).scan_policy_cache_seconds == 30


# --- the report cache, and failures (the core, on the test's table) -----------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _image_record(digest: str):
    from skyport.storage.ports import ManifestRecord

    return ManifestRecord(digest, "application/vnd.oci.image.manifest.v1+json", 10, artifact_type=None)


def test_reports_are_looked_up_once_per_ttl_and_the_cache_is_bounded(registry):
    from skyport.scan_policy import MAX_CACHED_REPORTS, ScanPolicies
    from skyport.scanning.model import Finding, Report
    from skyport.storage.dynamodb.scan_policy import DynamoScanPolicyStore

    looked_up: list[str] = []
    finding = Finding("CVE-1", (), "HIGH", "", "p", "1", "pkg:pypi/p@1")

    def report_of(repository: str, digest: str) -> Report:
        looked_up.append(digest)
        return Report(repository, digest, "2026-01-01T00:00:00Z", "osv", [finding])

    clock = Clock()
    policies = ScanPolicies(
        DynamoScanPolicyStore(registry.clients.dynamodb, registry.settings.table), report_of, 30, clock
    )
    policies.add("team/*", "HIGH")
    first = "sha256:" + "1" * 64
    for _ in range(5):
        with pytest.raises(Denied):
            policies.check(REPO, _image_record(first))
    assert looked_up == [first]
    clock.now += 31  # past the TTL: looked up again (and the policies read again)
    with pytest.raises(Denied):
        policies.check(REPO, _image_record(first))
    assert looked_up == [first, first]
    for number in range(MAX_CACHED_REPORTS + 1):
        with pytest.raises(Denied):
            policies.check(REPO, _image_record(f"sha256:{number:064x}"))
    looked_up.clear()
    with pytest.raises(Denied):
        policies.check(REPO, _image_record(first))  # the oldest entry was dropped
    assert looked_up == [first]


def test_a_report_that_cannot_be_read_fails_closed(registry):
    from skyport.scan_policy import ScanPolicies
    from skyport.storage.dynamodb.scan_policy import DynamoScanPolicyStore
    from skyport.storage.ports import StorageUnavailable

    def report_of(repository: str, digest: str):
        raise StorageUnavailable("S3 GetObject: SlowDown")

    policies = ScanPolicies(
        DynamoScanPolicyStore(registry.clients.dynamodb, registry.settings.table), report_of
    )
    policies.add("team/*", "LOW")
    with pytest.raises(StorageUnavailable):  # answered 503 UNAVAILABLE, never served
        policies.check(REPO, _image_record("sha256:" + "2" * 64))
    policies.check(OTHER, _image_record("sha256:" + "2" * 64))  # not covered: nothing read
