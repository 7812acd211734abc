"""The retention function's Lambda entry point (template.yaml: RetentionFunction).

Invoked by EventBridge Scheduler once a day (the SAM ScheduleV2 event; its payload,
events/retention/scheduled.json, only says when and which attempt). Thin: the core
evaluates and applies the rules repository by repository (``RetentionService.run``),
stopping while two minutes are left and saving its place, so that the next invocation
resumes there; reserved concurrency 1 keeps two runs from sharing the cursor. What went,
and why, is logged, one line per deleted manifest; the totals are returned.

An event with ``"dryRun": true`` (a manual `sam local invoke` or `aws lambda invoke`)
evaluates without deleting or moving the cursor.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import json
import logging
import os

from skyport.registry import Registry

log = logging.getLogger("skyport.retention.run")
log.setLevel(logging.INFO)
registry = Registry.from_env(os.environ)


def handler(event: dict, context: object = None) -> dict:
    dry_run = isinstance(event, dict) and event.get("dryRun") is True
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    report = registry.retention.run(
        dry_run=dry_run,
        remaining_seconds=(lambda: remaining() / 1000) if callable(remaining) else None,
        resume=True,
    )
    for plan in report.repositories:
        for decision in plan.decisions:
            if decision.delete:
                log.info(
                    json.dumps(
                        {
                            "repository": plan.repository,
                            "digest": decision.digest,
                            "tags": decision.tags,
                            "reasons": decision.reasons,
                            "outcome": decision.outcome or "dry run",
                        }
                    )
                )
    summary = {"asOfMs": report.as_of_ms, "dryRun": dry_run, "complete": report.complete, **report.totals()}
    log.info(json.dumps(summary))
    return summary
