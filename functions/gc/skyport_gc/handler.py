"""The garbage collector's Lambda entry point (template.yaml: GcFunction), invoked by
EventBridge Scheduler (``rate(1 day)`` by default; events/gc/scheduled.json).

Thin: the run is the core's (skyport/gc). It works until Lambda's remaining time minus a
margin, saves its cursor in the run item and returns; the next scheduled invocation
continues the run. The grace period is SKYPORT_GC_GRACE (24h by default). The event's
content is not read: a scheduled invocation carries nothing the run needs.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os

from skyport.registry import Registry

registry = Registry.from_env(os.environ)

# Time left for the last page and its save: a page is a few hundred items, each a conditional
# write at most, well within this.
MARGIN_SECONDS = 60


def handler(event: object = None, context: object = None) -> dict:
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)

    def time_left() -> float:
        if get_remaining is None:
            return 1.0  # no Lambda context (a local run): until done
        return get_remaining() / 1000 - MARGIN_SECONDS

    report = registry.gc.run(registry.settings.gc_grace_seconds * 1000, time_left=time_left)
    # Counters only: the names of what went stay out of the logs and the response.
    return {key: value for key, value in report.items() if key not in ("listed", "listed_limit")}
