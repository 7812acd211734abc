"""The OSV mirror's Lambda entry point (template.yaml: OsvMirrorFunction), invoked daily by
EventBridge Scheduler (events/osv_mirror/scheduled.json).

Thin: the work is the core's (skyport/vulnerabilities/mirror.py). It copies each
ecosystem's OSV export (SKYPORT_OSV_ECOSYSTEMS) from SKYPORT_OSV_SOURCE (OSV's export site
when deployed; unset: the data set shipped with the core, which is what `skyport serve`
runs) into the bucket's osv/ prefix, skipping unchanged exports. An ecosystem that fails
keeps its previous copy and is named in the response; the invocation fails (and is
logged as an error) only when every ecosystem failed, so that an alarm on errors means
"no vulnerability data is being refreshed". The event's content is not read.

Settings are read once, in the init phase; the boto3 client on first use.
"""

import os
from functools import cache

from skyport.config import Settings
from skyport.storage.clients import AwsClients
from skyport.storage.s3 import S3ObjectStore
from skyport.vulnerabilities.mirror import mirror, shipped_data

settings = Settings.from_env(os.environ)
clients = AwsClients(settings)


@cache
def _store() -> S3ObjectStore:
    return S3ObjectStore(clients.s3, settings.bucket)


class MirrorFailed(Exception):
    """Every ecosystem failed: nothing was refreshed."""


def handler(event: object = None, context: object = None) -> dict:
    source = settings.osv_source or str(shipped_data())
    result = mirror(source, _store(), settings.osv_ecosystems)
    if result.failed and not (result.updated or result.unchanged):
        raise MirrorFailed("; ".join(f"{name}: {why}" for name, why in sorted(result.failed.items())))
    return result.to_dict()
