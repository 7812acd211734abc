"""The OSV mirror's Lambda handler (template.yaml OsvMirrorFunction) fed its scheduled
event from events/, against moto: with no SKYPORT_OSV_SOURCE it mirrors the shipped data
set (never the network), and the template gives it what least privilege allows."""

from __future__ import annotations

import json
from pathlib import Path

from handler_module import import_handler
from harness import new_stack
from skyport.storage import keys
from skyport.storage.s3 import S3ObjectStore
from skyport.vulnerabilities.mirror import DEFAULT_ECOSYSTEMS

EVENT = Path(__file__).parents[2] / "events" / "osv_mirror" / "scheduled.json"


def test_the_scheduled_event_mirrors_the_shipped_data_set(moto_endpoint, aws_clients, template) -> None:
    settings = new_stack(moto_endpoint, aws_clients, template, label="osvfn")
    module = import_handler(
        {
            "SKYPORT_BUCKET": settings.bucket,
            "SKYPORT_TABLE": settings.table,
            "SKYPORT_S3_ENDPOINT": moto_endpoint,
            "SKYPORT_DYNAMODB_ENDPOINT": moto_endpoint,
            "SKYPORT_OSV_SOURCE": "",
        },
        "skyport_scan.osv_mirror",
    )
    event = json.loads(EVENT.read_text())
    response = module.handler(event, None)
    assert sorted(response["updated"]) == sorted(DEFAULT_ECOSYSTEMS)
    assert response["failed"] == {}
    index = json.loads(S3ObjectStore(aws_clients.s3, settings.bucket).read(keys.OSV_INDEX_OBJECT))
    assert sorted(index["ecosystems"]) == sorted(DEFAULT_ECOSYSTEMS)
    assert module.handler(event, None)["unchanged"] == list(DEFAULT_ECOSYSTEMS)


def test_the_template_gives_the_mirror_the_osv_prefix_only(template) -> None:
    function = template["Resources"]["OsvMirrorFunction"]["Properties"]
    assert function["Handler"] == "skyport_scan.osv_mirror.handler"
    assert function["CodeUri"] == "functions/scan/"
    assert function["Architectures"] == ["arm64"]
    (schedule,) = function["Events"].values()
    assert schedule["Type"] == "ScheduleV2"
    (statement,) = function["Policies"][0]["Statement"]
    assert statement["Resource"] == {"Fn::Sub": "${BlobBucket.Arn}/osv/*"}
    assert sorted(statement["Action"]) == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert function["Environment"]["Variables"]["SKYPORT_OSV_SOURCE"] == {"Ref": "OsvSource"}


def test_serve_gives_the_scheduled_mirror_a_directory_never_the_url(template) -> None:
    """`skyport serve` sets SKYPORT_OSV_SOURCE in its shell; the local pipeline lets it
    replace the template's URL for the function (pipeline.function_environment)."""
    from skyport.vulnerabilities.mirror import shipped_data
    from skyport_cli.pipeline import function_environment

    local = function_environment(
        template, "OsvMirrorFunction", {}, {"SKYPORT_OSV_SOURCE": str(shipped_data())}
    )
    assert local["SKYPORT_OSV_SOURCE"] == str(shipped_data())
