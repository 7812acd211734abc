"""CacheFillFunction's handler fed the event the API sends it: the blob is copied, checked
and linked; a malformed event is ignored; a second event for the same blob finds it there.
And the function's role grants what the fill calls, on this bucket and table only."""

from __future__ import annotations

from handler_module import import_handler
from oci import make_image, push_image, sha256
from skyport_cli.stack import load_template

from .conftest import PREFIX


def environment(registry) -> dict[str, str]:
    settings = registry.settings
    return {
        "SKYPORT_BUCKET": settings.bucket,
        "SKYPORT_TABLE": settings.table,
        "AWS_REGION": settings.region,
        "SKYPORT_S3_ENDPOINT": settings.s3_endpoint or "",
        "SKYPORT_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "SKYPORT_PART_SIZE": str(5 * 1024 * 1024),  # S3's minimum: a 6 MiB blob is two parts
    }


def test_the_handler_fills_a_blob(cache, upstream_client, storage):
    image = make_image((6 * 1024 * 1024,))  # more than one 5 MiB part: a multipart copy
    push_image(upstream_client, "team/app", image, "v1")
    digest = sha256(image.layers[0])
    handler = import_handler(environment(cache), "skyport_cache_fill.handler")
    repository = f"{PREFIX}/team/app"
    answer = handler.handler({"repository": repository, "digest": digest, "lease_owner": "x"})
    assert answer["outcome"] == "filled"
    assert cache.blobs.stat(repository, digest).size == len(image.layers[0])
    assert handler.handler({"repository": repository, "digest": digest})["outcome"] == "present"
    before = storage.snapshot()
    for event in (
        {},
        {"repository": "../x", "digest": digest},
        {"repository": repository, "digest": "x"},
        [],
    ):
        assert handler.handler(event)["outcome"].startswith("ignored")
    assert storage.snapshot() == before


def test_the_fill_role_is_scoped():
    fn = load_template()["Resources"]["CacheFillFunction"]["Properties"]
    assert fn["Timeout"] == 900
    statements = [s for p in fn["Policies"] for s in p["Statement"]]
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
    }
    assert all(isinstance(s["Resource"], dict) for s in statements)  # our own resources only
    api = load_template()["Resources"]["ApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["SKYPORT_CACHE_FILL_FUNCTION"] == {"Ref": "CacheFillFunction"}
