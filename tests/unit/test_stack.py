"""The local stack is built from template.yaml and matches it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from skyport_cli.stack import (
    TEMPLATE_PATH,
    ensure_stack,
    load_template,
    table_create_kwargs,
    table_ttl_attribute,
)

BUCKET = "skyport-test-blobs"
TABLE = "skyport-test-metadata"


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _client(service: str, endpoint: str, region: str = "us-east-1"):
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def clients(endpoint, template):
    s3, ddb = _client("s3", endpoint), _client("dynamodb", endpoint)
    # Twice: the second run must find everything in place and change nothing.
    ensure_stack(s3, ddb, BUCKET, TABLE, template)
    ensure_stack(s3, ddb, BUCKET, TABLE, template)
    return s3, ddb


def _props(template, logical_id):
    return template["Resources"][logical_id]["Properties"]


def test_default_template_is_the_repository_one():
    assert TEMPLATE_PATH == Path(__file__).resolve().parents[2] / "template.yaml"
    assert load_template()["Transform"] == "AWS::Serverless-2016-10-31"


def test_table_matches_template(clients, template):
    _, ddb = clients
    props = _props(template, "MetadataTable")
    table = ddb.describe_table(TableName=TABLE)["Table"]
    assert table["KeySchema"] == props["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": props["StreamSpecification"]["StreamViewType"],
    }
    assert [i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])] == [
        i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])
    ]

    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
    assert table_ttl_attribute(template) == ttl["AttributeName"]


def test_bucket_lifecycle_matches_template(clients, template):
    s3, _ = clients
    want = _props(template, "BlobBucket")["LifecycleConfiguration"]["Rules"]
    got = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
    assert set(got) == {r["Id"] for r in want}
    for rule in want:
        rule_got = got[rule["Id"]]
        assert rule_got["Status"] == rule["Status"]
        assert rule_got["Filter"].get("Prefix", "") == rule.get("Prefix", "")
        if "ExpirationInDays" in rule:
            assert rule_got["Expiration"]["Days"] == rule["ExpirationInDays"]
        if "AbortIncompleteMultipartUpload" in rule:
            assert rule_got["AbortIncompleteMultipartUpload"] == rule["AbortIncompleteMultipartUpload"]


def test_bucket_is_private_and_encrypted(clients, template):
    s3, _ = clients
    props = _props(template, "BlobBucket")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == props["PublicAccessBlockConfiguration"]
    assert all(block.values())

    enc = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    want = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in enc["Rules"]] == [
        r["ServerSideEncryptionByDefault"] for r in want
    ]

    owner = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]
    assert owner == props["OwnershipControls"]


def test_bucket_outside_us_east_1(endpoint, template):
    s3 = _client("s3", endpoint, "eu-west-1")
    ddb = _client("dynamodb", endpoint, "eu-west-1")
    ensure_stack(s3, ddb, "skyport-test-eu", "skyport-test-eu", template, region="eu-west-1")
    ensure_stack(s3, ddb, "skyport-test-eu", "skyport-test-eu", template, region="eu-west-1")
    loc = s3.get_bucket_location(Bucket="skyport-test-eu")["LocationConstraint"]
    assert loc == "eu-west-1"


def test_short_form_tags_become_long_form(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            A: !Ref Thing
            B: !GetAtt Res.Arn
            C: !Sub "${Res.Arn}/*"
            D: !If [Cond, !Ref X, !Ref AWS::NoValue]
            E: !Not [!Equals [!Ref P, ""]]
            F: !And [!Condition Other, !Select [0, !Split [",", "a,b"]]]
            G: !Join ["", [a, b]]
            """
        )
    )
    assert load_template(path) == {
        "A": {"Ref": "Thing"},
        "B": {"Fn::GetAtt": ["Res", "Arn"]},
        "C": {"Fn::Sub": "${Res.Arn}/*"},
        "D": {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]},
        "E": {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
        "F": {
            "Fn::And": [
                {"Condition": "Other"},
                {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
            ]
        },
        "G": {"Fn::Join": ["", ["a", "b"]]},
    }


def test_unresolvable_intrinsics_are_skipped():
    template = {
        "Parameters": {"Mode": {"Type": "String", "Default": "PAY_PER_REQUEST"}},
        "Resources": {
            "MetadataTable": {
                "Properties": {
                    "TableName": {"Fn::Sub": "${AWS::StackName}-meta"},
                    "BillingMode": {"Ref": "Mode"},
                    "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "PK", "AttributeType": "S"}],
                }
            }
        },
    }
    assert table_create_kwargs(template, "t") == {
        "TableName": "t",
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "PK", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
