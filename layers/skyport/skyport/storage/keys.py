"""Every S3 key and DynamoDB key Skyport uses, and nothing else builds one.

::

    S3 bucket
    ├── blobs/<upload-id>                   a blob's bytes. Named after the upload that wrote
    │                                       it: multipart upload fixes the key before the digest
    │                                       is known, and renaming would copy the blob.
    │                                       Also, for the length of one request, the staging
    │                                       object of a fold (multipart.py): a multipart upload
    │                                       that ended in a short part, completed (S3 completes
    │                                       it only at this key) to be copied into a new one,
    │                                       then deleted before the session is saved.
    ├── manifests/<algorithm>/<encoded>     manifest bodies too big to live inline in DynamoDB
    ├── osv/<Ecosystem>/all.zip             (vulnerability data, issue 14: skyport/vulnerabilities)
    │                                       the mirrored OSV export of one ecosystem ("Debian",
    │                                       "PyPI", ...: OSV's per-ecosystem export name), only
    │                                       ever replaced by a complete, validated zip
    ├── osv/index.json                      what is mirrored: per ecosystem its sha256, size,
    │                                       record count, newest "modified", and the source's
    │                                       validator (ETag / Last-Modified) for the next run
    └── uploads/<upload-id>/tail-<offset>-<writer>
                                            the tail (< 5 MiB) of an upload in progress, kept
                                            until enough data arrives for a part (or put in as
                                            the last part by the closing PUT); ends at
                                            <offset>, written by the request <writer>, so two
                                            requests that both wrote to the upload (a lease
                                            taken over) never write or delete each other's
                                            tail. Expired by a lifecycle rule.

    DynamoDB table, keys PK / SK (strings)
    ├── BLOB#<digest>     / META                          the blob: S3 key and size. Global, the
    │                                                     first writer wins (blob_is_new); used_ms
    │                                                     (last upload or mount of it) and gc_mark
    │                                                     (the last GC run that saw a link to it)
    ├── REPO#<name>       / BLOB#<digest>                 link: the blob is visible in <name>; a
    │                                                     copy of its S3 key and size, and used_ms
    │                                                     (last linked, or referenced by a push)
    │                     / MANIFEST#<digest>             a manifest: media type, size, body (or
    │                                                     its S3 key), subject, artifact type
    │                     / TAG#<tag>                     tag -> digest, plus a copy of the
    │                                                     manifest item: GET by tag is one read
    │                     / REFERRER#<subject>#<digest>   descriptor of a manifest in <name>
    │                                                     whose subject is <subject>
    │                     / PULL#<digest>                 when the manifest was last pulled
    │                                                     (last_pulled_ms), written at most once
    │                                                     an interval per process, never per pull
    │   (scan on push, issue 14: skyport/scanning/service.py, storage/dynamodb/scans.py)
    │                     / SCAN#<digest>                 the scan of that platform manifest:
    │                                                     scan_status (scanning, complete,
    │                                                     failed), lease (lease_owner,
    │                                                     lease_until), sbom and report digests,
    │                                                     counts by severity, scanned_at, OSV
    │                                                     database version, new_findings of a
    │                                                     re-scan, error. Goes with its manifest
    │                                                     (the manifest delete's transaction);
    │                                                     its terminal writes are scan.completed
    │                                                     and scan.failed (skyport/events.py)
    ├── CATALOG           / REPO#<name>                   <name> holds a manifest (push_id: the last push)
    ├── UPLOAD#<id>       / META                          an upload session (offset, parts, tail,
    │                                                     hash state, lease, owner when auth is
    │                                                     on, quota); TTL `expires_at`. A direct
    │                                                     upload (skyport push) also holds its
    │                                                     digest, size and state, and a lease
    │                                                     for its whole life (DIRECT_LEASE);
    │                                                     its bytes go to blobs/<id> as parts
    ├── OPEN_UPLOADS#<quota> / SESSIONS                   the upload sessions open in <quota>
    │                                                     (identity:<name>, or repository:<name>
    │                                                     with auth off): id -> expires_at, for
    │                                                     the cap on open sessions; TTL
    │                                                     `expires_at` (its newest session's)
    ├── IDENTITY          / <name>                        a user or robot account (robot+<name>):
    │                                                     scrypt hash of its password or secret,
    │                                                     admin flag, groups, generation (bumped
    │                                                     when the secret changes: refresh tokens
    │                                                     die), identity id (new for each
    │                                                     creation: tokens carry it), failed
    │                                                     logins, locked until
    ├── LOCKOUT           / <name>#<source address>       failed logins of one identity from one
    │                                                     address since window_start, locked
    │                                                     until; TTL `expires_at`
    ├── GRANT             / <pattern>#<principal>         actions on repositories matching
    │                                                     <pattern> for <principal> (a name,
    │                                                     group:<g>, or * = everyone: public pull)
    ├── AUTH              / SIGNING_KEYS                  token signing keys, current and previous
    │                     │                               (local stacks only; deployed: Secrets
    │                     │                               Manager or SSM)
    │                     / BOOTSTRAP                     the first admin was made from its secret
    │   (replication, issue 11: skyport/replication, storage/dynamodb/replication.py)
    ├── REPLICATION       / RULE#<id>                     a replication rule: repository and tag
    │                                                     patterns, destination URL (never a
    │                                                     secret), deletes, insecure, whether its
    │                                                     credential secret exists; and its status:
    │                                                     last success, last error, lag
    ├── REPLICATION_ORDER#<rule id> / <ordering key>      the newest stream sequence number that
    │                                                     rule applied for that tag or manifest
    │                                                     (events.RegistryEvent.ordering_key), as a
    │                                                     zero-padded string so that strings compare
    │                                                     as the integers do; TTL `expires_at`
    │   (webhooks, issue 11: skyport/webhooks.py, storage/dynamodb/webhooks.py)
    ├── WEBHOOK           / <webhook id>                  a subscription: URL, event types,
    │                                                     repository pattern, insecure flag.
    │                                                     Its signing secret is never here:
    │                                                     Secrets Manager, hook_secrets +
    │                                                     "webhooks/<webhook id>"
    ├── WEBHOOK_DELIVERY#<event id> / <webhook id>        <webhook id> answered 2xx to <event
    │                                                     id>: a retry of the event skips it.
    │                                                     One Query reads every receiver that
    │                                                     has it; TTL `expires_at`
    │   (tag immutability, issue 12: skyport/immutability.py, storage/dynamodb/immutability.py)
    ├── IMMUTABILITY      / <rule id>                     a rule: repository pattern, tag
    │                                                     exclusion patterns, created_ms.
    │                                                     Read whole (one Query) and cached
    │                                                     by each process; no stream event
    │   (retention, issue 12: skyport/retention.py, storage/dynamodb/retention.py)
    ├── RETENTION         / RULE#<rule id>                a rule: repository pattern, keep-last
    │                     │                               N, keep pushed / pulled within, keep
    │                     │                               tag patterns, untagged after (seconds)
    │                     / CURSOR                        where a scheduled run stopped (the
    │                                                     last repository it finished): the
    │                                                     next invocation resumes after it
    │   (pull-through cache, issue 13: skyport/pull_through, storage/dynamodb/pull_through.py)
    ├── CACHE             / RULE#<prefix>                 a cache rule: upstream URL, insecure,
    │                                                     mirror, username, and where its
    │                                                     password is (the NAME of an environment
    │                                                     variable locally, or a Secrets Manager
    │                                                     secret's name; never the password).
    │                                                     Read whole and cached by each process;
    │                                                     no stream event. Cached content lives
    │                                                     under REPO#<prefix>/... like pushed
    │                                                     content; its TAG items also hold
    │                                                     upstream_checked_ms (when upstream was
    │                                                     last asked; a MODIFY with the same
    │                                                     digest makes no event)
    ├── CACHE_FILL#<digest> / REPO#<name>             a fill of that blob into <name> is running
    │                                                     (lease_owner, lease_until): a hundred
    │                                                     misses start one copy; TTL `expires_at`
    │   (scan policies, issue 14: skyport/scan_policy.py, storage/dynamodb/scan_policy.py)
    ├── SCAN_POLICY       / <repository pattern>          a policy: refuse manifests whose report
    │                                                     has findings at or above a severity;
    │                                                     allowed vulnerability ids, require-scan
    │                                                     flag, created_ms. Read whole (one
    │                                                     Query) and cached by each process; no
    │                                                     stream event
    │   (garbage collection, issue 12: skyport/gc, storage/dynamodb/gc.py)
    └── GC                / RUN                           the collector's current or last run:
                                                          run id, start, grace, phase, cursor
                                                          (LastEvaluatedKey or continuation
                                                          token), counters, and its lease
                                                          (lease_owner, lease_until); no
                                                          stream event

Sort keys within a partition are compared bytewise, which is the lexical
order the spec asks of tag and catalog listings.

The table's stream (NEW_AND_OLD_IMAGES) carries every write to the table. Registry
events (skyport/events.py) come from four kinds of item only: REPO#<name> / MANIFEST#,
REPO#<name> / TAG#, REPO#<name> / SCAN# and CATALOG / REPO#<name>; the events function's event source
mapping lets nothing else through (events.EVENT_SOURCE_FILTER). A new kind of key here
goes into tests/events/test_event_filter.py's KEY_KINDS, which fails until it does.
"""

from __future__ import annotations

PK = "PK"
SK = "SK"
TTL_ATTRIBUTE = "expires_at"

META = "META"
BLOB_PREFIX = "BLOB#"
MANIFEST_PREFIX = "MANIFEST#"
TAG_PREFIX = "TAG#"
REFERRER_PREFIX = "REFERRER#"
REPO_PREFIX = "REPO#"
PULL_PREFIX = "PULL#"
SCAN_PREFIX = "SCAN#"  # issue 14: the scan record of a manifest
CATALOG = "CATALOG"


# --- S3 ---------------------------------------------------------------------


def blob_object(upload_id: str) -> str:
    return f"blobs/{upload_id}"


def manifest_object(digest: str) -> str:
    algorithm, encoded = digest.split(":", 1)
    return f"manifests/{algorithm}/{encoded}"


def upload_tail_object(upload_id: str, end_offset: int, writer: str) -> str:
    return f"uploads/{upload_id}/tail-{end_offset}-{writer}"


# The two prefixes the upload expiry sweep lists (skyport/upload_expiry.py), and the
# upload id each key above is named after (None: a key no upload wrote).
BLOB_OBJECTS = "blobs/"
UPLOAD_TAILS = "uploads/"


def upload_of_blob_object(key: str) -> str | None:
    upload_id = key.removeprefix(BLOB_OBJECTS)
    return upload_id if key.startswith(BLOB_OBJECTS) and upload_id and "/" not in upload_id else None


def upload_of_tail_object(key: str) -> str | None:
    upload_id, slash, rest = key.removeprefix(UPLOAD_TAILS).partition("/")
    return upload_id if key.startswith(UPLOAD_TAILS) and upload_id and slash and rest else None


# --- DynamoDB ---------------------------------------------------------------


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {PK: {"S": pk}, SK: {"S": sk}}


def repository_partition(name: str) -> str:
    return f"{REPO_PREFIX}{name}"


def blob(digest: str) -> dict:
    return _key(f"{BLOB_PREFIX}{digest}", META)


def blob_link(name: str, digest: str) -> dict:
    return _key(repository_partition(name), f"{BLOB_PREFIX}{digest}")


def manifest(name: str, digest: str) -> dict:
    return _key(repository_partition(name), f"{MANIFEST_PREFIX}{digest}")


def tag(name: str, tag_name: str) -> dict:
    return _key(repository_partition(name), f"{TAG_PREFIX}{tag_name}")


def referrer_prefix(subject: str) -> str:
    return f"{REFERRER_PREFIX}{subject}#"


def referrer(name: str, subject: str, digest: str) -> dict:
    return _key(repository_partition(name), f"{referrer_prefix(subject)}{digest}")


def manifest_pull(name: str, digest: str) -> dict:
    return _key(repository_partition(name), f"{PULL_PREFIX}{digest}")


def catalog_entry(name: str) -> dict:
    return _key(CATALOG, f"{REPO_PREFIX}{name}")


def upload(upload_id: str) -> dict:
    return _key(f"UPLOAD#{upload_id}", META)


def open_uploads(quota: str) -> dict:
    return _key(f"OPEN_UPLOADS#{quota}", "SESSIONS")


# --- auth -------------------------------------------------------------------

IDENTITY = "IDENTITY"
GRANT = "GRANT"
LOCKOUT = "LOCKOUT"
AUTH = "AUTH"


def identity(name: str) -> dict:
    return _key(IDENTITY, name)


def lockout_prefix(name: str) -> str:
    # Identity names hold no '#': the prefix of one identity is never another's.
    return f"{name}#"


def lockout(name: str, source: str) -> dict:
    return _key(LOCKOUT, f"{lockout_prefix(name)}{source}")


def grant(pattern: str, principal: str) -> dict:
    return _key(GRANT, f"{pattern}#{principal}")


def signing_keys() -> dict:
    return _key(AUTH, "SIGNING_KEYS")


def bootstrap_marker() -> dict:
    return _key(AUTH, "BOOTSTRAP")


# --- webhooks (issue 11) ----------------------------------------------------

WEBHOOK = "WEBHOOK"
WEBHOOK_DELIVERY_PREFIX = "WEBHOOK_DELIVERY#"


def webhook(webhook_id: str) -> dict:
    return _key(WEBHOOK, webhook_id)


def webhook_deliveries_partition(event_id: str) -> str:
    return f"{WEBHOOK_DELIVERY_PREFIX}{event_id}"


def webhook_delivery(event_id: str, webhook_id: str) -> dict:
    return _key(webhook_deliveries_partition(event_id), webhook_id)


# --- replication (issue 11) -------------------------------------------------------
# Neither partition starts with REPO# nor is CATALOG: no registry event comes of them.

REPLICATION = "REPLICATION"
REPLICATION_RULE_PREFIX = "RULE#"
REPLICATION_ORDER_PREFIX = "REPLICATION_ORDER#"


def replication_rule(rule_id: str) -> dict:
    return _key(REPLICATION, f"{REPLICATION_RULE_PREFIX}{rule_id}")


def replication_order(rule_id: str, ordering_key: str) -> dict:
    return _key(f"{REPLICATION_ORDER_PREFIX}{rule_id}", ordering_key)


# --- tag immutability (issue 12) ----------------------------------------------

IMMUTABILITY = "IMMUTABILITY"


def immutability_rule(rule_id: str) -> dict:
    return _key(IMMUTABILITY, rule_id)


# --- retention (issue 12) -----------------------------------------------------

RETENTION = "RETENTION"
RETENTION_RULE_PREFIX = "RULE#"


def retention_rule(rule_id: str) -> dict:
    return _key(RETENTION, f"{RETENTION_RULE_PREFIX}{rule_id}")


def retention_cursor() -> dict:
    return _key(RETENTION, "CURSOR")


# --- garbage collection (issue 12) ----------------------------------------------

GC = "GC"


def gc_run() -> dict:
    return _key(GC, "RUN")


# --- pull-through cache (issue 13) ------------------------------------------------
# Neither partition starts with REPO# nor is CATALOG: no registry event comes of them.

CACHE = "CACHE"
CACHE_RULE_PREFIX = "RULE#"
CACHE_FILL_PREFIX = "CACHE_FILL#"


def cache_rule(prefix: str) -> dict:
    return _key(CACHE, f"{CACHE_RULE_PREFIX}{prefix}")


def cache_fill_lease(repository: str, digest: str) -> dict:
    return _key(f"{CACHE_FILL_PREFIX}{digest}", repository_partition(repository))


def upload_id_of_object(key: str) -> str | None:
    """The upload a blobs/<upload-id> or uploads/<upload-id>/... object belongs to."""
    return upload_of_blob_object(key) or upload_of_tail_object(key)


# --- scan on push (issue 14) -----------------------------------------------------------
# In the repository's partition, so the manifest delete removes it in its transaction.


def scan_record(name: str, digest: str) -> dict:
    return _key(repository_partition(name), f"{SCAN_PREFIX}{digest}")


# --- scan policies (issue 14) ---------------------------------------------------------
# Not REPO# nor CATALOG: no registry event comes of a policy.

SCAN_POLICY = "SCAN_POLICY"


def scan_policy(pattern: str) -> dict:
    return _key(SCAN_POLICY, pattern)


# --- vulnerability data (issue 14) ---------------------------------------------------
# Written by the mirror function only (skyport/vulnerabilities/mirror.py), read by scans.

OSV_INDEX_OBJECT = "osv/index.json"


def osv_export_object(ecosystem: str) -> str:
    """``ecosystem`` is an OSV export name (mirror.ECOSYSTEM_NAME checks it): no slash."""
    return f"osv/{ecosystem}/all.zip"
