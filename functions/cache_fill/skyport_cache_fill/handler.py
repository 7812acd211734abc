"""The cache fill's Lambda entry point (template.yaml: CacheFillFunction).

Invoked by the API function with InvocationType=Event and ``{"repository", "digest",
"lease_owner"}`` when a blob GET missed the pull-through cache: it streams the blob from
the rule's upstream into S3, verifies its digest and registers it
(``BlobFill.run``, skyport/pull_through/fill.py). Thin: the whole job is the core's. The
outcome is returned, never raised for a refused blob (a retry would fetch the same bytes);
an AWS error propagates, so Lambda retries the event (twice); ``run`` is idempotent.

Settings are read once, in the init phase; boto3 clients on first use.
"""

import os

from skyport.digest import Digest
from skyport.errors import RegistryError
from skyport.reference import validate_name
from skyport.registry import Registry

registry = Registry.from_env(os.environ)


def handler(event: dict, context: object = None) -> dict:
    if not isinstance(event, dict):
        return {"outcome": "ignored: not an object"}
    repository, digest, owner = event.get("repository"), event.get("digest"), event.get("lease_owner")
    try:
        validate_name(repository if isinstance(repository, str) else "")
        Digest.parse(digest if isinstance(digest, str) else "")
    except RegistryError:
        return {"outcome": "ignored: no valid repository and digest"}
    owner = owner if isinstance(owner, str) and 0 < len(owner) <= 64 else None
    return {
        "repository": repository,
        "digest": digest,
        "outcome": registry.cache_fill.run(repository, digest, owner),
    }
