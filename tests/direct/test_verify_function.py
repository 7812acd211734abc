"""The deployed verifier (functions/verify, template.yaml VerifyFunction): its handler
fed the event the API function sends, against moto; and its role's least privilege."""

from __future__ import annotations

import hashlib
import os

import urllib3
from handler_module import import_handler
from skyport.direct_uploads import LambdaVerifier
from skyport.registry import Registry
from skyport_cli.stack import load_template


class _Recorded:
    """Stands in for the Lambda service (an AWS endpoint, not our code): records invokes."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def invoke(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        return {"StatusCode": 202}


def _verifier_handler(registry: Registry):
    settings = registry.settings
    environment = {
        "SKYPORT_BUCKET": settings.bucket,
        "SKYPORT_TABLE": settings.table,
        "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
        "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
    }
    return import_handler(environment, "skyport_verify.handler")


def test_the_api_invokes_the_verifier_asynchronously_and_the_handler_verifies(registry: Registry) -> None:
    lambda_service = _Recorded()
    service = registry.direct_uploads
    service._launcher = LambdaVerifier(lambda_service, "skyport-verify")  # as SKYPORT_VERIFY_FUNCTION does
    data = os.urandom(4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = service.start("team/app", digest, len(data))
    (url,) = service.part_urls("team/app", upload.upload_id, [1]).values()
    assert urllib3.request("PUT", url, body=data).status == 200
    assert service.complete("team/app", upload.upload_id).state == "verifying"
    (call,) = lambda_service.calls
    assert call["InvocationType"] == "Event" and call["FunctionName"] == "skyport-verify"

    handler = _verifier_handler(registry)
    import json

    event = json.loads(call["Payload"])
    assert handler.handler(event) == {"upload_id": upload.upload_id, "outcome": "registered"}
    assert registry.blobs.stat("team/app", digest).size == len(data)
    # A second delivery of the same event (Lambda retries) finds nothing to do.
    assert handler.handler(event)["outcome"] == "gone"
    assert handler.handler({"nothing": 1}) == {"outcome": "ignored: no upload_id"}


def test_the_verifier_role_is_least_privilege() -> None:
    resources = load_template()["Resources"]
    verify = resources["VerifyFunction"]["Properties"]
    assert verify["Timeout"] == 900 and verify["MemorySize"] >= 1769
    statements = [s for p in verify["Policies"] for s in p["Statement"]]
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert {"Fn::Sub": "${BlobBucket.Arn}/blobs/*"} in [s["Resource"] for s in statements]
    assert {"Fn::GetAtt": ["MetadataTable", "Arn"]} in [s["Resource"] for s in statements]
    api = resources["ApiFunction"]["Properties"]
    # Unconditional documents only (the upload service's key grant is an ``!If``).
    invoke = [
        s
        for p in api["Policies"]
        if "Statement" in p
        for s in p["Statement"]
        if "lambda:InvokeFunction" in s["Action"]
    ]
    # The verifier, and the pull-through cache's fill function (issue 13), each by its own ARN.
    assert [s["Resource"] for s in invoke] == [
        {"Fn::GetAtt": ["VerifyFunction", "Arn"]},
        {"Fn::GetAtt": ["CacheFillFunction", "Arn"]},
    ]
    assert api["Environment"]["Variables"]["SKYPORT_VERIFY_FUNCTION"] == {"Ref": "VerifyFunction"}
