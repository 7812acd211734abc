"""The upload expiry sweep's Lambda entry point (template.yaml: UploadExpiryFunction).

EventBridge Scheduler invokes it every hour with the schedule's Input (template.yaml;
a sample: events/upload_expiry/scheduled.json). Thin: the sweep is the core's
(``skyport.upload_expiry``). Its work is bounded by the invocation's remaining time,
less a margin to report in: what it did not reach, the next hour's run does. An event
with ``"dry_run": true`` (a manual test invoke) removes nothing.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os
import time

from skyport.registry import Registry

registry = Registry.from_env(os.environ)
# Seconds kept back from the invocation's remaining time: the last removal and the report.
MARGIN_SECONDS = 30
# Without a Lambda context (a local call): the function's Timeout, less the margin.
DEFAULT_SECONDS = 900 - MARGIN_SECONDS


def handler(event: object, context: object = None) -> dict:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    seconds = remaining() / 1000 - MARGIN_SECONDS if remaining else DEFAULT_SECONDS
    dry_run = isinstance(event, dict) and event.get("dry_run") is True
    report = registry.upload_expiry.sweep(dry_run=dry_run, deadline=time.time() + seconds)
    result = report.fields()
    result.pop("removed")  # counts only: the invocation's result stays small
    return result
