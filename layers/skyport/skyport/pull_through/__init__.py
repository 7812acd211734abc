"""The pull-through cache (issue 13): repositories under a rule's prefix are read from an
upstream registry on a miss and kept, so that later pulls touch no upstream.

One module per concept:

- ``rules.py``: the rules (prefix -> upstream URL, credentials, the mirror), their
  validation and administration (`skyport cache add|list|remove`), the name mapping;
- ``upstream.py``: calls to upstream (one pool per process, tokens, credentials) and
  what its failures mean;
- ``manifests.py``: manifests by digest (fetched once) and by tag (re-checked with a HEAD
  after SKYPORT_CACHE_TAG_RECHECK_SECONDS; served stale with a Warning when upstream fails);
- ``blobs.py``: blob misses answered by redirect, never by copying in the request;
- ``fill.py``: the asynchronous, de-duplicated, verified copy of a blob into S3;
- ``cache.py``: the service the API routes call.

Storage: ``storage/dynamodb/pull_through.py``; keys in ``storage/keys.py``. Cached content is
stored like pushed content (manifest index, blob records and links), so events, usage, the
catalog, GC and retention treat it the same.
"""

from .cache import PullThroughCache
from .rules import CacheRule, CacheRuleInvalid, CacheRules, CacheRuleUnknown, CacheTarget

__all__ = [
    "CacheRule",
    "CacheRuleInvalid",
    "CacheRuleUnknown",
    "CacheRules",
    "CacheTarget",
    "PullThroughCache",
]
