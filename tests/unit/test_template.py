"""template.yaml passes cfn-lint, and keeps the properties the design relies on."""

from __future__ import annotations

import ast
import json
import os

import botocore.session
from botocore import xform_name
from cfnlint.api import lint_file
from skyport_cli.stack import TEMPLATE_PATH, load_template


def test_cfn_lint_reports_no_errors_or_warnings():
    matches = lint_file(TEMPLATE_PATH)
    problems = [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"]
    assert problems == []


def test_upload_tails_expire():
    rules = load_template()["Resources"]["BlobBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "uploads/" and "ExpirationInDays" in r for r in rules)
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)


def function_policies(fn: dict) -> list[dict]:
    """The function's policy documents; one under a condition (``!If [Cond, doc,
    AWS::NoValue]``, as the upload service's key is granted) counts with its branches."""
    documents = []
    for policy in fn["Policies"]:
        if "Fn::If" in policy:
            _, *branches = policy["Fn::If"]
            documents += [branch for branch in branches if branch != {"Ref": "AWS::NoValue"}]
        else:
            documents.append(policy)
    return documents


def test_function_policy_is_scoped_to_the_bucket_and_table():
    fn = load_template()["Resources"]["ApiFunction"]["Properties"]
    resources = [s["Resource"] for p in function_policies(fn) for s in p["Statement"]]
    assert "*" not in resources
    assert all(isinstance(r, dict) for r in resources)  # GetAtt/Sub of our own resources


# --------------------------------------------------------------------------- least privilege

# The deployed code: the core layer and the function (the CLI never runs on Lambda).
DEPLOYED_CODE = [
    TEMPLATE_PATH.parent / "layers" / "skyport" / "skyport",
    TEMPLATE_PATH.parent / "functions" / "api" / "skyport_api",
]
# Core packages the API function never imports: their calls belong to the roles of the
# functions that run them (replication: the replication function; its rule admin: the
# CLI, with the operator's credentials), not to the API's.
# The hooks' SQS consumer and webhook dispatcher likewise (tests/unit/test_hooks_template.py).
NOT_RUN_BY_THE_API = [
    TEMPLATE_PATH.parent / "layers" / "skyport" / "skyport" / name
    for name in (
        "replication",
        "webhooks.py",
        "sqs_batches.py",
        # The upload expiry sweep (issue 12): UploadExpiryFunction's role, compared with a
        # real sweep's calls in tests/upload_expiry/test_function.py.
        "upload_expiry.py",
        "storage/s3_listings.py",
        "storage/dynamodb/upload_expiry.py",
        # Garbage collection (issue 12): the GC function's (tests/unit/test_gc_template.py).
        "gc",
        "storage/dynamodb/gc.py",
        # The cache rules' secrets are put in by the CLI (issue 13: pull_through/admin.py).
        "pull_through/admin.py",
    )
]
SERVICES = ("s3", "dynamodb", "secretsmanager", "ssm")
# A service the function reaches only when its environment names one of these; without
# them its calls are dead code there, and the role must not grant them.
CONFIGURED_BY = {
    "secretsmanager": ("SKYPORT_SIGNING_KEY_SECRET", "SKYPORT_ADMIN_SECRET", "SKYPORT_UPLOAD_KEY_SECRET"),
    "ssm": ("SKYPORT_SIGNING_KEY_PARAMETER",),
    "lambda": ("SKYPORT_VERIFY_FUNCTION", "SKYPORT_CACHE_FILL_FUNCTION"),
}
# Operations whose IAM actions are not simply service:Operation (Service Authorization
# Reference, "Actions defined by Amazon S3" / "Amazon DynamoDB").
ACTIONS_OF = {
    ("s3", "HeadObject"): {"s3:GetObject"},
    ("s3", "CopyObject"): {"s3:GetObject", "s3:PutObject"},
    ("s3", "UploadPartCopy"): {"s3:GetObject", "s3:PutObject"},
    ("s3", "CreateMultipartUpload"): {"s3:PutObject"},
    ("s3", "UploadPart"): {"s3:PutObject"},
    ("s3", "CompleteMultipartUpload"): {"s3:PutObject"},
    ("s3", "ListParts"): {"s3:ListMultipartUploadParts"},
    ("s3", "ListMultipartUploads"): {"s3:ListBucketMultipartUploads"},
    ("s3", "ListObjectsV2"): {"s3:ListBucket"},
    ("s3", "ListObjects"): {"s3:ListBucket"},
    ("s3", "DeleteObjects"): {"s3:DeleteObject"},
    ("dynamodb", "TransactGetItems"): {"dynamodb:GetItem"},
    # Each item of a transaction needs its own action: see TRANSACT_ITEMS.
    ("dynamodb", "TransactWriteItems"): set(),
    ("lambda", "Invoke"): {"lambda:InvokeFunction"},
}
TRANSACT_ITEMS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Powertools Parameters call boto3 for us.
POWERTOOLS = {
    "SecretsProvider": ("secretsmanager", "GetSecretValue"),
    "get_secret": ("secretsmanager", "GetSecretValue"),
    "SSMProvider": ("ssm", "GetParameter"),
    # Direct uploads start the verifier function (lambda is not scanned: its operation
    # names, list_tags among them, are our own methods' names too).
    "LambdaVerifier": ("lambda", "Invoke"),
    # The pull-through cache starts its fill function the same way (issue 13).
    "LambdaFills": ("lambda", "Invoke"),
}


def _names_in(tree) -> tuple[set[str], set[str]]:
    """What a module may call AWS with: string constants (``_call("put_object", ...)``,
    presigned operations), called attributes (``table.query(...)``) and called names;
    and the string keys of its dict literals (the items of a DynamoDB transaction)."""
    names, keys = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
        elif isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys if isinstance(k, ast.Constant))
    return names, keys


def aws_calls_in_code() -> dict[tuple[str, str], list[str]]:
    """(service, Operation) -> the files that call it, for the services the role covers.
    The items of a DynamoDB transaction appear as ("dynamodb", "<Put|Update|...>@transact"),
    wherever the dicts that hold them are built."""
    session = botocore.session.get_session()
    operations = {}  # snake_case name -> [(service, Operation)]
    for service in SERVICES:
        for operation in session.get_service_model(service).operation_names:
            operations.setdefault(xform_name(operation), []).append((service, operation))
    calls: dict[tuple[str, str], list[str]] = {}
    transact_items: dict[tuple[str, str], list[str]] = {}
    for root in DEPLOYED_CODE:
        for path in sorted(root.rglob("*.py")):
            if any(path.is_relative_to(skipped) for skipped in NOT_RUN_BY_THE_API):
                continue
            where = str(path.relative_to(TEMPLATE_PATH.parent))
            names, keys = _names_in(ast.parse(path.read_text(), str(path)))
            found = [c for name in names for c in operations.get(name, [])]
            found += [POWERTOOLS[name] for name in names if name in POWERTOOLS]
            for call in found:
                calls.setdefault(call, []).append(where)
            for key in keys & set(TRANSACT_ITEMS):
                transact_items.setdefault(("dynamodb", f"{key}@transact"), []).append(where)
    if ("dynamodb", "TransactWriteItems") in calls:
        calls.update(transact_items)
    return calls


def _actions(service: str, operation: str) -> set[str]:
    if operation.endswith("@transact"):
        return {TRANSACT_ITEMS[operation.removesuffix("@transact")]}
    return ACTIONS_OF.get((service, operation), {f"{service}:{operation}"})


def test_the_role_grants_exactly_the_aws_calls_the_code_makes():
    template = load_template()
    fn = template["Resources"]["ApiFunction"]["Properties"]
    environment = fn["Environment"]["Variables"]
    needed: dict[str, list[str]] = {}
    for (service, operation), files in aws_calls_in_code().items():
        if service in CONFIGURED_BY and not any(v in environment for v in CONFIGURED_BY[service]):
            continue
        for action in _actions(service, operation):
            needed.setdefault(action, []).extend(files)
    granted = set()
    for policy in function_policies(fn):
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", statement
            actions = statement["Action"]
            granted.update([actions] if isinstance(actions, str) else actions)
    missing = {action: sorted(set(needed[action])) for action in set(needed) - granted}
    unused = granted - set(needed)
    assert missing == {}, f"the code calls these, the role does not grant them: {missing}"
    assert unused == set(), f"the role grants these, no deployed code calls them: {sorted(unused)}"


def test_the_api_never_imports_what_the_scan_skips():
    import subprocess
    import sys

    skipped = [
        ".".join(p.relative_to(TEMPLATE_PATH.parent / "layers" / "skyport").with_suffix("").parts)
        for p in NOT_RUN_BY_THE_API
    ]
    script = (
        "import sys, skyport_api.handler\n"
        f"print(sorted(m for m in sys.modules if m.startswith(tuple({skipped!r}))))\n"
    )
    environment = {"SKYPORT_BUCKET": "b", "SKYPORT_TABLE": "t", "AWS_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **environment},
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_scan_sees_the_calls_it_must():
    """The comparison above is only as good as the scan: the calls every push makes."""
    calls = aws_calls_in_code()
    for call in [
        ("s3", "PutObject"),
        ("s3", "UploadPart"),
        ("s3", "CompleteMultipartUpload"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "Query"),
        ("dynamodb", "TransactWriteItems"),
        ("secretsmanager", "GetSecretValue"),
    ]:
        assert call in calls, call


def test_rate_limits_and_logs():
    template = load_template()
    resources = template["Resources"]
    api = resources["HttpApi"]["Properties"]
    assert set(api["DefaultRouteSettings"]) == {"ThrottlingRateLimit", "ThrottlingBurstLimit"}
    assert "ReservedConcurrentExecutions" in resources["ApiFunction"]["Properties"]
    logging = resources["ApiFunction"]["Properties"]["LoggingConfig"]
    assert logging == {"LogGroup": {"Ref": "ApiFunctionLogGroup"}}
    assert "RetentionInDays" in resources["ApiFunctionLogGroup"]["Properties"]
    access = api["AccessLogSettings"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    assert "RetentionInDays" in resources["HttpApiAccessLogGroup"]["Properties"]
    fields = json.loads(access["Format"])
    # $context variables only, and never one that holds the query string.
    assert all(value.startswith("$context.") for value in fields.values()), fields
    assert not {"$context.rawPath", "$context.rawQueryString"} & set(fields.values()), fields
