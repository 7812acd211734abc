"""Rule patterns and destination URLs; the store's conditions (the ordering guard compares
sequence numbers as integers, status never outlives its rule); the server-side copy's
multipart path; a skyport:// destination reached through an assumed role."""

from __future__ import annotations

import os
import uuid

import pytest
from oci import make_image, push_image
from skyport.registry import Registry
from skyport.replication.rules import (
    RuleInvalid,
    repository_matches,
    tag_matches,
    validate_destination,
    validate_repository_pattern,
)
from skyport.storage.dynamodb.replication import DynamoReplicationStore
from skyport.storage.ports import ReplicationRule
from skyport.storage.s3 import S3ObjectStore

from .conftest import replicate_all, skyport_url


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("team/*", "team/app", True),
        ("team/*", "team/a/b", True),
        ("team/*", "teams/app", False),
        ("team/*", "team", False),
        ("*", "anything/at/all", True),
        ("app-?", "app-1", True),
        ("app-?", "app-12", False),
        ("a/?", "a//", False),
        ("library/app", "library/app", True),
        ("library/app", "library/apps", False),
        ("a.b", "axb", False),  # '.' is literal
    ],
)
def test_repository_patterns(pattern, name, matches):
    assert repository_matches(validate_repository_pattern(pattern), name) is matches


def test_tag_patterns():
    assert tag_matches("v*", "v1.2") and not tag_matches("v*", "latest")
    assert tag_matches("release-?", "release-a") and not tag_matches("release-?", "release-ab")


@pytest.mark.parametrize("pattern", ["TEAM/*", "team/", "/team", "a//b", "a b", "team/[x]", "é/*", "x" * 256])
def test_bad_repository_patterns_are_refused(pattern):
    with pytest.raises(RuleInvalid):
        validate_repository_pattern(pattern)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://u:p@registry.example.net", "must not carry credentials"),
        ("https://registry.example.net/Bad_Prefix", "is not a repository name"),
        ("https://registry.example.net?x=1", "takes no query"),
        ("https://", "names no host"),
        ("http://host:port", "destination URL is not a URL"),
        ("skyport://b/t?region=us-east-1", "not an S3 bucket name"),
        ("skyport://bucket/t?region=us-east-1", "not a DynamoDB table name"),
        ("skyport://bucket/table?region=us-east-1&role=admin", "IAM role ARN"),
        ("skyport://bucket/table?region=us-east-1&endpoint=ftp://x", "endpoint="),
        ("skyport://bucket/table?region=us-east-1&colour=red", "unknown parameters"),
        ("skyport://bucket/table?region=us-east-1&region=eu-west-1", "given twice"),
        ("s3://bucket", "unknown destination"),
        # The same outbound-URL check as webhooks (skyport/outbound_urls.py).
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[fe80::1]:5000", "link-local"),
        # 169.254.169.254 as the system's resolver also reads it, and EC2's IPv6 metadata.
        ("http://169.254.43518/latest", "link-local"),
        ("http://0xa9.0xfe.0xa9.0xfe/latest", "link-local"),
        ("http://[fd00:ec2::254]/latest", "link-local"),
        ("https://régistry.example.net", "ASCII"),
        ("https://registry.example.net/x\nHost: evil", "no spaces or control characters"),
        ("https://registry.example.net:0", "port is 1-65535"),
        ("https://registry.example.net/" + "a" * 3000, "at most 2048"),
    ],
)
def test_bad_destinations_are_refused(url, message):
    with pytest.raises(RuleInvalid, match=message):
        validate_destination(url)


def test_good_destinations():
    assert (
        validate_destination("https://registry.example.net/mirror/") == "https://registry.example.net/mirror"
    )
    url = "skyport://bucket-1/table-1?region=eu-west-1&role=arn:aws:iam::123456789012:role/replicator"
    assert validate_destination(url) == url


def test_the_guard_compares_sequence_numbers_as_integers(registry: Registry):
    store = DynamoReplicationStore(registry.clients.dynamodb, registry.settings.table)
    key = "team/app:latest"
    assert store.record_applied("r1", key, 9, 0)
    assert store.record_applied("r1", key, 10, 0)  # "10" < "9" as strings, not as numbers
    assert not store.record_applied("r1", key, 9, 0)
    assert not store.record_applied("r1", key, 10, 0)  # the same event again
    big = 10**39 + 7  # DynamoDB Streams sequence numbers run to 40 digits
    assert store.record_applied("r1", key, big, 0)
    assert not store.record_applied("r1", key, big - 1, 0)
    assert store.applied_sequence("r1", key) == big
    assert store.applied_sequence("r2", key) is None  # per rule


def test_status_never_outlives_its_rule(registry: Registry):
    store = DynamoReplicationStore(registry.clients.dynamodb, registry.settings.table)
    rule = ReplicationRule(id="abcdef012345", repositories="*", destination="https://example.net")
    assert store.add_rule(rule)
    assert not store.add_rule(rule)  # RULE_IS_NEW
    store.record_error(rule.id, 100, "boom")
    store.record_success(rule.id, 200, 1.5)
    ((stored, status),) = store.list_rules()
    assert stored == rule and (status.last_error, status.last_success_at, status.lag_seconds) == (
        "boom",
        200,
        1.5,
    )
    assert store.remove_rule(rule.id) and not store.remove_rule(rule.id)
    store.record_success(rule.id, 300, None)
    store.record_error(rule.id, 300, "late")
    assert store.list_rules() == [] and store.get_rule(rule.id) is None


def test_server_side_copy_part_by_part(registry: Registry, destination: Registry):
    data = os.urandom(12 * 1024 * 1024 + 5)
    registry.clients.s3.put_object(Bucket=registry.settings.bucket, Key="blobs/source", Body=data)
    store = S3ObjectStore(destination.clients.s3, destination.settings.bucket)
    store.copy_from_bucket(
        registry.settings.bucket,
        "blobs/source",
        "blobs/copy",
        len(data),
        single_copy_limit=1,
        part_size=5 * 1024**2,
    )
    copied = destination.clients.s3.get_object(Bucket=destination.settings.bucket, Key="blobs/copy")
    assert copied["Body"].read() == data
    assert copied["ETag"].endswith('-3"')  # three parts: 5 + 5 + 2 MiB
    assert (
        destination.clients.s3.list_multipart_uploads(Bucket=destination.settings.bucket).get("Uploads", [])
        == []
    )


def test_a_skyport_destination_through_an_assumed_role(rules, replicator, feed, source_client, destination):
    role = f"arn:aws:iam::123456789012:role/replicator-{uuid.uuid4().hex[:6]}"
    rules.add("*", skyport_url(destination) + f"&role={role}")
    image = make_image()
    push_image(source_client, "app", image, "1")
    replicate_all(replicator, feed.new())
    assert destination.manifests.resolve("app", "1").digest == image.digest
