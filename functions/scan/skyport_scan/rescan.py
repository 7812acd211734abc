"""The daily re-scan's Lambda entry point (template.yaml: RescanFunction, Handler
skyport_scan.rescan.handler), invoked by EventBridge Scheduler once a day.

Thin: ``ScanService.rescan_recent`` re-matches the stored SBOM of every scanned platform
image pulled within SKYPORT_RESCAN_PULLED_DAYS against the current OSV data; each new
report is a scan.completed event whose ``newFindings`` names the ids the previous report
had not. It stops starting scans two minutes before the invocation's end; the next day's
run starts over (the images it did not reach are the least urgent: they wait a day).

Settings are read once, in the init phase; boto3 clients on first use.
"""

from __future__ import annotations

import json
import logging
import os
import time

from skyport.registry import Registry

log = logging.getLogger("skyport.scanning.rescan")
log.setLevel(logging.INFO)
registry = Registry.from_env(os.environ)
# Scans stop starting this long before the invocation's end.
STOP_BEFORE_END_SECONDS = 120


def handler(event: dict, context: object = None) -> dict:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    deadline = (
        time.monotonic() + remaining() / 1000 - STOP_BEFORE_END_SECONDS if callable(remaining) else None
    )
    summary = registry.scanning.rescan_recent(deadline=deadline)
    result = {
        "rescanned": summary.rescanned,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "finished": summary.finished,
        "newFindings": {image: list(ids) for image, ids in summary.new_findings.items()},
    }
    log.info(json.dumps(result))
    return result
