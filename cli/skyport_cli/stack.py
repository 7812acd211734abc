"""Create the local bucket and table from template.yaml.

The deployed stack and the local one (moto, for `skyport serve` and the tests)
must not drift, so nothing here restates the table's keys or the bucket's
rules: they are read from the SAM template and translated from CloudFormation
property names to the boto3 API shapes. Values that only CloudFormation can
resolve (GetAtt, Sub, If, ...) are skipped; a Ref to a parameter takes the
parameter's default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"

# Logical ids in template.yaml.
BUCKET_RESOURCE = "BlobBucket"
TABLE_RESOURCE = "MetadataTable"


# --------------------------------------------------------------------------- YAML


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that knows CloudFormation's short-form tags (!Ref, !Sub, ...)."""


def _construct_short_form(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        # `!GetAtt Res.Attr` is the short form of ["Res", "Attr"].
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_short_form)


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, long-form intrinsics in place of tags."""
    with open(path or TEMPLATE_PATH, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


# ------------------------------------------------------------------ intrinsics

_SKIP = object()  # marks a value CloudFormation would compute, unknown here


def _resolve(template: dict[str, Any], value: Any) -> Any:
    """Resolve what can be resolved locally; return _SKIP for the rest."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                param = template.get("Parameters", {}).get(arg, {})
                return param["Default"] if "Default" in param else _SKIP
            if key.startswith("Fn::"):
                return _SKIP
        out = {k: _resolve(template, v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _SKIP}
    if isinstance(value, list):
        items = [_resolve(template, v) for v in value]
        return [v for v in items if v is not _SKIP]
    return value


def _properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return _resolve(template, template["Resources"][logical_id].get("Properties", {}))


# ---------------------------------------------------------------------- table


def table_create_kwargs(template: dict[str, Any], table_name: str) -> dict[str, Any]:
    """`create_table` arguments for MetadataTable.

    Point-in-time recovery and SSE are left out: they protect deployed data
    and mean nothing for a throwaway local table.
    """
    props = _properties(template, TABLE_RESOURCE)
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    # The CloudFormation shapes of these match the API's.
    for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            kwargs[key] = props[key]
    if "StreamSpecification" in props:
        # CloudFormation enables the stream by naming a view type; the API
        # wants the flag too.
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    return kwargs


def table_ttl_attribute(template: dict[str, Any]) -> str:
    """The attribute DynamoDB's TTL reads (epoch seconds)."""
    return _properties(template, TABLE_RESOURCE)["TimeToLiveSpecification"]["AttributeName"]


def _ensure_table(dynamodb: Any, template: dict[str, Any], table: str) -> None:
    try:
        dynamodb.create_table(**table_create_kwargs(template, table))
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table)

    ttl = _properties(template, TABLE_RESOURCE).get("TimeToLiveSpecification", {})
    if not ttl.get("Enabled"):
        return
    # DynamoDB refuses to enable TTL twice, so look first.
    current = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
    )


# --------------------------------------------------------------------- bucket


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One CloudFormation LifecycleConfiguration rule as a boto3 lifecycle rule.

    Raises ValueError for a property not translated here, so that a rule added
    to the template cannot be silently dropped from the local stack.
    """
    out: dict[str, Any] = {"Status": rule["Status"]}
    filters: dict[str, Any] = {}
    for key, value in rule.items():
        if key == "Status":
            continue
        elif key == "Id":
            out["ID"] = value
        elif key == "Prefix":
            filters["Prefix"] = value
        elif key == "TagFilters":
            filters["Tags"] = value
        elif key == "ExpirationInDays":
            out.setdefault("Expiration", {})["Days"] = value
        elif key == "ExpiredObjectDeleteMarker":
            out.setdefault("Expiration", {})["ExpiredObjectDeleteMarker"] = value
        elif key == "AbortIncompleteMultipartUpload":
            out[key] = {"DaysAfterInitiation": value["DaysAfterInitiation"]}
        elif key == "NoncurrentVersionExpirationInDays":
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": value}
        else:
            raise ValueError(f"lifecycle rule property {key!r} is not translated for local use")
    # The API wants exactly one filter element: a lone prefix or tag, or an
    # And of several; an empty prefix means the whole bucket.
    tags = filters.pop("Tags", [])
    if not tags:
        out["Filter"] = {"Prefix": filters.get("Prefix", "")}
    elif len(tags) == 1 and not filters:
        out["Filter"] = {"Tag": tags[0]}
    else:
        out["Filter"] = {"And": {**filters, "Tags": tags}}
    return out


def _ensure_bucket(s3: Any, template: dict[str, Any], bucket: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 rejects an explicit constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as e:
        if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise

    # Every put below replaces the whole configuration, so re-running is safe.
    # The TLS-only bucket policy is not applied: the local endpoint is http.
    props = _properties(template, BUCKET_RESOURCE)
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
    if "BucketEncryption" in props:
        # CloudFormation's ServerSideEncryptionByDefault is the API's
        # ApplyServerSideEncryptionByDefault.
        rename = {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"}
        rules = [
            {rename.get(k, k): v for k, v in rule.items()}
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    if "LifecycleConfiguration" in props:
        rules = [_lifecycle_rule(r) for r in props["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


# ---------------------------------------------------------------------- stack


def ensure_stack(
    s3_client: Any,
    dynamodb_client: Any,
    bucket: str,
    table: str,
    template: dict[str, Any] | None = None,
    region: str = "us-east-1",
    *,
    events_client: Any = None,
    sqs_client: Any = None,
) -> HookResources | None:
    """Create (or bring up to date) the bucket and table described by the template; with
    ``events_client`` and ``sqs_client``, the hooks' bus, queues and rules too, named after
    the table (``ensure_hooks``), and return what they are called.

    Idempotent: safe to call on every start of a local server.
    """
    template = template if template is not None else load_template()
    _ensure_table(dynamodb_client, template, table)
    _ensure_bucket(s3_client, template, bucket, region)
    if events_client is None or sqs_client is None:
        return None
    return ensure_hooks(events_client, sqs_client, table, template)


# ------------------------------------------------------------------- function

FUNCTION_RESOURCE = "ApiFunction"


def function_environment(
    template: dict[str, Any] | None = None, logical_id: str = FUNCTION_RESOURCE
) -> dict[str, str]:
    """The environment template.yaml gives the function, as far as it resolves locally
    (references to the stack's own bucket and table do not: the caller sets those)."""
    template = template if template is not None else load_template()
    props = _properties(template, logical_id)
    variables = props.get("Environment", {}).get("Variables", {})
    return {name: str(value) for name, value in variables.items()}


def function_timeout(template: dict[str, Any] | None = None, logical_id: str = FUNCTION_RESOURCE) -> float:
    """The function's timeout in seconds (Lambda's default is 3)."""
    template = template if template is not None else load_template()
    return float(_properties(template, logical_id).get("Timeout", 3))


# ---------------------------------------------------------------------- hooks
# Issue 11: the registry's bus, the queues the hooks consume, and the rules between them,
# created in moto from template.yaml for `skyport serve`'s local pipeline (pipeline.py).
# Names are made from the table's, so that two local registries on one moto never share
# a bus or a queue.

EVENT_BUS_TYPE = "AWS::Events::EventBus"
QUEUE_TYPE = "AWS::SQS::Queue"
RULE_TYPE = "AWS::Events::Rule"


@dataclass(frozen=True)
class HookResources:
    """What the local stack created for the hooks, by logical id: ``refs`` holds what
    ``!Ref`` gives deployed (a bus's name, a queue's URL), ``arns`` what ``!GetAtt .Arn``
    gives."""

    refs: dict[str, str]
    arns: dict[str, str]


def local_name(prefix: str, logical_id: str) -> str:
    """A local resource's name: SQS allows 80 characters of [A-Za-z0-9_-]."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}-{logical_id}")[-80:].lstrip("-_")


def _resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == kind
    }


def _arn_of(value: Any, arns: dict[str, str]) -> str:
    """The local ARN a ``!GetAtt Resource.Arn`` names."""
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if not (isinstance(target, list) and len(target) == 2 and target[1] == "Arn" and target[0] in arns):
        raise ValueError(f"{value!r} is not the Arn of a resource the local stack creates")
    return arns[target[0]]


def _queue_attributes(
    template: dict[str, Any], properties: dict[str, Any], arns: dict[str, str]
) -> dict[str, str]:
    """A queue's CloudFormation properties as CreateQueue attributes. Raises ValueError for
    a property not translated here, so one added to the template is never silently dropped."""
    attributes: dict[str, str] = {}
    for key, value in properties.items():
        if key == "SqsManagedSseEnabled":
            continue  # encryption at rest protects deployed data; moto's is in memory
        if key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
        ):
            resolved = _resolve(template, value)
            if resolved is _SKIP:
                raise ValueError(f"queue property {key!r} does not resolve locally")
            attributes[key] = str(resolved)
        elif key == "RedrivePolicy":
            policy = {
                "deadLetterTargetArn": _arn_of(value["deadLetterTargetArn"], arns),
                "maxReceiveCount": int(value["maxReceiveCount"]),
            }
            attributes[key] = json.dumps(policy)
        else:
            raise ValueError(f"queue property {key!r} is not translated for local use")
    return attributes


def ensure_hooks(events: Any, sqs: Any, prefix: str, template: dict[str, Any] | None = None) -> HookResources:
    """Create (or leave as they are) the template's event buses, queues and rules, named
    after ``prefix``. Queue policies are left out: moto checks no permissions."""
    template = template if template is not None else load_template()
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id in _resources_of(template, EVENT_BUS_TYPE):
        name = local_name(prefix, logical_id)
        try:
            arns[logical_id] = events.create_event_bus(Name=name)["EventBusArn"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
            arns[logical_id] = events.describe_event_bus(Name=name)["Arn"]
        refs[logical_id] = name
    queues = _resources_of(template, QUEUE_TYPE)
    # Dead-letter queues first: a redrive policy names its queue's ARN.
    for logical_id in sorted(queues, key=lambda queue: "RedrivePolicy" in queues[queue]):
        name = local_name(prefix, logical_id)
        attributes = _queue_attributes(template, queues[logical_id], arns)
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        refs[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    for logical_id, properties in _resources_of(template, RULE_TYPE).items():
        bus = properties.get("EventBusName")
        bus_id = bus.get("Ref") if isinstance(bus, dict) else None
        if bus_id not in refs:
            raise ValueError(f"rule {logical_id}: its bus is not one the local stack creates")
        events.put_rule(
            Name=logical_id,
            EventBusName=refs[bus_id],
            EventPattern=json.dumps(properties["EventPattern"]),
            State=properties.get("State", "ENABLED"),
        )
        targets = [
            {"Id": target["Id"], "Arn": _arn_of(target["Arn"], arns)} for target in properties["Targets"]
        ]
        events.put_targets(Rule=logical_id, EventBusName=refs[bus_id], Targets=targets)
    return HookResources(refs=refs, arns=arns)
