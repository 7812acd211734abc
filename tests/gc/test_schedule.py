"""The local twin of EventBridge Scheduler (cli/skyport_cli/pipeline.py): every function of
the template with a schedule event runs on its rate in `skyport serve`, GcFunction first,
and any scheduled function added later with no change to the runner."""

from __future__ import annotations

import copy
import time

import pytest
from gc_support import items
from oci import push_blob
from skyport_cli.pipeline import (
    CRON_LOCAL_PERIOD_SECONDS,
    LocalPipeline,
    LocalStack,
    schedule_period,
    scheduled_jobs,
    scheduler_event,
)
from skyport_cli.stack import HookResources


def test_the_gc_function_is_a_scheduled_job(template):
    (job,) = [job for job in scheduled_jobs(template, shell={}) if job.function == "GcFunction"]
    assert job.handler == "skyport_gc.handler.handler"
    assert job.expression == "rate(1 day)" and job.period_seconds == 86400 and job.timeout == 900


def test_another_scheduled_function_is_picked_up_as_it_is(template):
    added = copy.deepcopy(template)
    added["Resources"]["NightlyFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Handler": "nightly.handler",
            "Timeout": 60,
            "Events": {"Nightly": {"Type": "Schedule", "Properties": {"Schedule": "rate(6 hours)"}}},
        },
    }
    jobs = {job.function: job for job in scheduled_jobs(added, shell={})}
    assert jobs["NightlyFunction"].period_seconds == 6 * 3600
    shortened = {
        job.function: job for job in scheduled_jobs(added, shell={"SKYPORT_LOCAL_SCHEDULE_SECONDS": "2"})
    }
    assert {job.period_seconds for job in shortened.values()} == {2.0}


def test_every_scheduled_function_of_the_template_runs_locally_with_its_input(template):
    """GC daily, retention daily, upload expiry hourly (issue 12); a schedule with an Input
    sends it as the event, as Scheduler does."""
    jobs = {job.function: job for job in scheduled_jobs(template, shell={})}
    assert {name: job.period_seconds for name, job in jobs.items()} == {
        "GcFunction": 86400,
        "RetentionFunction": 86400,
        "UploadExpiryFunction": 3600,
        "OsvMirrorFunction": 86400,  # issue 14: the OSV data mirror
    }
    upload_expiry = jobs["UploadExpiryFunction"]
    assert scheduler_event(upload_expiry, "us-east-1") == {
        "source": "skyport.schedule",
        "job": "upload-expiry",
    }
    assert scheduler_event(jobs["GcFunction"], "us-east-1")["source"] == "aws.scheduler"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("cron(0 3 * * ? *)", CRON_LOCAL_PERIOD_SECONDS),
    ],
)
def test_rates_and_cron(expression, seconds):
    assert schedule_period(expression) == seconds


@pytest.mark.parametrize(
    "expression", ["rate(0 minutes)", "rate(1 fortnight)", "at(2026-12-06T03:00:00)", ""]
)
def test_what_the_runner_cannot_run_is_refused(expression):
    with pytest.raises(ValueError):
        schedule_period(expression)


def test_serve_runs_the_gc_function_on_its_schedule(http, registry, template, monkeypatch):
    settings = registry.settings
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.setenv(name, settings.dynamodb_endpoint or "")
    monkeypatch.setenv("SKYPORT_LOCAL_SCHEDULE_SECONDS", "0.3")
    monkeypatch.setenv("SKYPORT_GC_GRACE", "0")  # the shell's value wins over the template's 24h
    push_blob(http, "team/app", b"unreferenced", mode="post")
    only_gc = copy.deepcopy(template)
    only_gc["Resources"] = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource.get("Type") != "AWS::Serverless::Function" or name == "GcFunction"
    }
    pipeline = LocalPipeline(
        LocalStack(
            table=settings.table,
            bucket=settings.bucket,
            region=settings.region,
            s3_endpoint=settings.s3_endpoint or "",
            dynamodb_endpoint=settings.dynamodb_endpoint or "",
            hooks=HookResources({}, {}),
        ),
        registry.clients,
        template=only_gc,
    )
    lines = pipeline.start()
    try:
        assert lines == ["GcFunction <- rate(1 day) (here every 0.3 s)"]
        deadline = time.monotonic() + 30
        while items(registry, "BLOB#") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pipeline.stop()
    assert pipeline.invocations["GcFunction"] >= 1
    assert items(registry, "BLOB#") == set()
