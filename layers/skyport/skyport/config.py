"""Settings, read once from an environment mapping (never from os.environ directly)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    bucket: str
    table: str
    region: str = "us-east-1"
    # Set for moto or any S3/DynamoDB-compatible endpoint; None means AWS.
    s3_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    # Presigned blob URLs live 20 minutes by default: long enough for a slow
    # pull to start, short enough that a leaked URL soon dies.
    presign_expiry_seconds: int = 1200
    # "redirect": GET blob answers 307 to S3. "proxy": the server streams the
    # blob itself, for local users whose clients cannot reach the S3 endpoint.
    blob_delivery: str = "redirect"
    # S3 multipart parts: every part but the last must be >= 5 MiB; bigger
    # parts mean fewer calls, at the cost of memory while streaming.
    part_size: int = 8 * MiB
    min_part_size: int = 5 * MiB
    # distribution-spec asks registries to accept manifests of at least 4 MiB.
    max_manifest_size: int = 4 * MiB
    # The most descriptors (config and layers, or child manifests) one manifest may
    # list; each is looked up before it is stored. Real images have tens of layers and
    # indexes tens of platforms and attestations: the cap is far above both.
    max_manifest_references: int = 1000
    # Manifest bodies up to this size live inline in DynamoDB items (400 KB
    # cap, and the tag item holds a copy), bigger ones in S3.
    inline_manifest_limit: int = 128 * 1024
    # Upload sessions expire (DynamoDB TTL) a week after they start, like
    # Distribution's upload purging; the bucket's lifecycle rules match.
    upload_ttl_seconds: int = 7 * 24 * 3600
    # The most upload sessions open at once per identity (auth on) or, with auth off,
    # per repository; 0: no cap. Each lives upload_ttl_seconds unless finished or
    # cancelled, so the cap bounds what abandoned or hostile uploads can pile up.
    max_open_uploads: int = 1000
    # How long one request may hold an upload session before another may
    # take it over (a crashed writer must not block the upload for ever).
    upload_lease_seconds: int = 900
    # distribution-spec "Mounting a blob from another repository": a `mount` without
    # `from` may be answered from any repository holding the blob (201) or with a new
    # upload session (202). False: always the session, never a mount without `from`.
    automatic_mount: bool = True
    # Default page size for tags and catalog when the client gives no `n`.
    default_page_size: int = 1000
    # The largest request body one upload request may carry; 0 means no limit
    # (a server of our own). Behind API Gateway and Lambda a body arrives
    # base64-encoded inside a 6 MiB event, so the deployed stack sets a limit
    # (template.yaml) and larger pushes must come in chunks of at most this.
    max_request_body: int = 0
    # --- auth (docs/auth.md) ---
    # "off": anyone who reaches the registry may do anything (local trials).
    # "on": Docker token auth, users and robots, per-repository grants.
    auth: str = "off"
    # Access tokens live this long (the token spec asks at least 60 s), refresh
    # tokens (docker login's identity token) much longer.
    token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # The `service` of the challenge and the tokens' audience; their issuer.
    token_service: str = "skyport"
    token_issuer: str = "skyport"
    # The token endpoint's absolute URL for challenges; None: derived from the
    # request (scheme and Host, as API Gateway forwards them).
    token_realm: str | None = None
    # Where signing keys come from when deployed (Powertools Parameters, cached):
    # a Secrets Manager secret (its previous version verifies too) or an SSM
    # parameter. Neither: keys live in the table (local stacks).
    signing_key_secret: str | None = None
    signing_key_parameter: str | None = None
    # `skyport serve`: the signing key lives in this process only, never in the table
    # (the embedded moto answers anyone on loopback).
    signing_key_in_memory: bool = False
    # A Secrets Manager secret {"username", "password"}: the first admin, created
    # on its first login (template.yaml).
    admin_secret: str | None = None
    # After this many failed logins of one user from one source address within the
    # window, that user is locked for that address for 1 s, then 2, 4, ... up to the
    # cap. Robots are never locked (their secrets are 256 bits).
    lockout_threshold: int = 5
    lockout_max_seconds: int = 900
    lockout_window_seconds: int = 900
    # --- direct uploads (skyport.direct_uploads, `skyport push`) ---
    # Presigned UploadPart URLs live this long: minutes, enough to send one part on a
    # slow link; the client asks for new ones as it goes (SKYPORT_DIRECT_URL_EXPIRES).
    direct_url_seconds: int = 900
    # The verifier Lambda function (template.yaml VerifyFunction), invoked
    # asynchronously; None: the verifier runs in a thread of this process (local).
    verify_function: str | None = None
    # How the verifier reads an object back: 1, one GetObject stream; more, that many
    # ranged GETs at a time (SKYPORT_VERIFY_READERS; template.yaml sets 8 for S3).
    verify_readers: int = 1
    # --- the upload service (issue 10; skyport/auth/capabilities.py) ---
    # The upload service's public base URL (no path). Set on the API: a started upload's
    # Location names that host, with a capability. None: relative Locations, no capability.
    upload_endpoint: str | None = None
    # The capability MAC key: its value (SKYPORT_UPLOAD_KEY; ECS injects it into the
    # upload service's task) or a Secrets Manager secret holding it (the API function).
    # Never in repr: settings may be printed or logged.
    upload_key: str | None = field(default=None, repr=False)
    upload_key_secret: str | None = None
    # The registry's public base URL, on the upload service: the 201 of a finished
    # upload names the blob there, not on the upload host.
    registry_url: str | None = None

    # --- hooks (issue 11: replication, webhooks) ---
    # Secrets Manager names of hook credentials start with this: a replication rule's
    # destination password at "<prefix>replication/<rule id>", a webhook's signing secret at
    # "<prefix>webhooks/<webhook id>". The functions may read "<prefix>*" and nothing else
    # of Secrets Manager's hook secrets. Default: "skyport/<table>/hooks/".
    hook_secret_prefix: str = ""

    # --- tag immutability (issue 12: skyport/immutability.py) ---
    # Each process reads the rules at most this often (SKYPORT_IMMUTABILITY_CACHE_SECONDS):
    # a push costs no extra read; a rule change reaches running instances within it.
    immutability_cache_seconds: int = 30

    # --- last-pull records and retention (issue 12: skyport/pulls.py, skyport/retention.py) ---
    # Each process writes a manifest's last-pull time at most this often
    # (SKYPORT_PULL_RECORD_SECONDS): "last pulled" is accurate to this interval.
    pull_record_seconds: int = 3600
    # --- garbage collection (issue 12: skyport/gc) ---
    # Nothing used within this period is collected (SKYPORT_GC_GRACE: 24h, 90m, 0...): far
    # longer than any request, which the collector's argument needs (skyport/gc/__init__.py).
    gc_grace_seconds: int = 24 * 3600

    # --- pull-through cache (issue 13: skyport/pull_through) ---
    # A cached tag is served this long without asking upstream (SKYPORT_CACHE_TAG_RECHECK_SECONDS);
    # then one HEAD upstream (HEADs do not count against Docker Hub's pull limit) re-checks it.
    cache_tag_recheck_seconds: int = 300
    # Each process reads the cache rules at most this often (SKYPORT_CACHE_RULES_SECONDS).
    cache_rules_seconds: int = 30
    # Deployed: the fill function the API invokes asynchronously (SKYPORT_CACHE_FILL_FUNCTION);
    # unset: fills run in a thread pool of this process (`skyport serve`, tests).
    cache_fill_function: str | None = None
    # How long a blob GET waits for a fill when it cannot redirect upstream (an upstream
    # that serves bytes itself to credentials only): SKYPORT_CACHE_FILL_WAIT_SECONDS.
    cache_fill_wait_seconds: int = 5
    # Per upstream call made while a client waits (connect, and read of the headers):
    # SKYPORT_CACHE_UPSTREAM_TIMEOUT_SECONDS; well under API Gateway's 30 s.
    cache_upstream_timeout_seconds: int = 10
    # --- pull performance (issue 13: skyport/blob_cache.py) ---
    # Blob links each process keeps in memory (SKYPORT_BLOB_CACHE_ENTRIES; ~500 B each,
    # measured, so the default is about 2 MiB), and how long one may answer before the table is
    # asked again (SKYPORT_BLOB_CACHE_SECONDS): the longest another instance's blob delete
    # (or the collector's) goes unseen. 60 s: a pull, a CI job's burst of pulls, fits in
    # it; and it is far under the 20 minutes a presigned URL handed out before the delete
    # keeps working anyway (presign_expiry_seconds). Either 0: no cache.
    blob_cache_entries: int = 4096
    blob_cache_seconds: int = 60
    # --- scan on push (issue 14: skyport/scanning/service.py) ---
    # Every pushed platform image is scanned (SKYPORT_SCAN_ON_PUSH on|off; `skyport scan`
    # and the daily re-scan work either way).
    scan_on_push: bool = True
    # A scan's lease on its record (SKYPORT_SCAN_LEASE_SECONDS): above the scan function's
    # 900 s timeout, so a live scan is never taken over; a dead one is after it.
    scan_lease_seconds: int = 960
    # The daily re-scan covers images pulled within this many days (SKYPORT_RESCAN_PULLED_DAYS).
    rescan_pulled_days: int = 7
    # Handed to the scanner's ScanLimits (0: its default): compressed bytes of one layer,
    # and expanded bytes of one whole scan (SKYPORT_SCAN_MAX_LAYER_BYTES, _MAX_TOTAL_BYTES).
    scan_max_layer_bytes: int = 0
    scan_max_total_bytes: int = 0
    # --- scan policies (issue 14: skyport/scan_policy.py) ---
    # Each process reads the policies, and the report of an image a policy covers, at most
    # this often (SKYPORT_SCAN_POLICY_CACHE_SECONDS): a pull costs no read for them.
    scan_policy_cache_seconds: int = 30

    # --- vulnerability data (issue 14: skyport/vulnerabilities) ---
    # Where the OSV mirror copies from (SKYPORT_OSV_SOURCE): an http(s) base URL serving
    # <Ecosystem>/all.zip (template.yaml: OSV's export site), or a directory of
    # <Ecosystem>/<ID>.json records. Unset: the data set shipped with the core, never the
    # network (`skyport serve`, tests).
    osv_source: str = ""
    # The OSV ecosystems mirrored (SKYPORT_OSV_ECOSYSTEMS, comma-separated export names).
    osv_ecosystems: tuple[str, ...] = ("Debian", "Ubuntu", "Alpine", "PyPI", "npm", "Maven", "Go")
    # How often a scanning process looks for a newer mirror (osv/index.json):
    # SKYPORT_OSV_REFRESH_SECONDS.
    osv_refresh_seconds: int = 300

    @property
    def hook_secrets(self) -> str:
        return self.hook_secret_prefix or f"skyport/{self.table}/hooks/"

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on"

    @property
    def chunk_min_length(self) -> int:
        """What `OCI-Chunk-Min-Length` advertises: chunks of a part's size cost the
        fewest requests, but never more than one request may carry."""
        if self.max_request_body:
            return min(self.min_part_size, self.max_request_body)
        return self.min_part_size

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        defaults = {f.name: f.default for f in fields(cls)}

        def integer(name: str, field_name: str) -> int:
            value = env.get(name)
            return int(value) if value else defaults[field_name]

        auth = (env.get("SKYPORT_AUTH") or "off").lower()
        if auth not in ("on", "off"):
            raise ValueError(f"SKYPORT_AUTH must be on or off, not {auth!r}")
        automatic_mount = (env.get("SKYPORT_AUTOMATIC_MOUNT") or "on").lower()
        if automatic_mount not in ("on", "off"):
            raise ValueError(f"SKYPORT_AUTOMATIC_MOUNT must be on or off, not {automatic_mount!r}")
        delivery = env.get("SKYPORT_BLOB_DELIVERY", "redirect")
        expiry = integer("SKYPORT_PRESIGN_EXPIRES", "presign_expiry_seconds")
        if not 1 <= expiry <= 604800:
            # SigV4 presigned URLs live at most 7 days; refuse at start, not at first pull.
            raise ValueError(f"SKYPORT_PRESIGN_EXPIRES must be 1..604800 seconds, not {expiry}")
        max_open_uploads = integer("SKYPORT_MAX_OPEN_UPLOADS", "max_open_uploads")
        if max_open_uploads < 0:
            raise ValueError(f"SKYPORT_MAX_OPEN_UPLOADS must be 0 (no cap) or more, not {max_open_uploads}")
        if delivery not in ("redirect", "proxy"):
            raise ValueError(f"SKYPORT_BLOB_DELIVERY must be redirect or proxy, not {delivery!r}")
        return cls(
            bucket=env["SKYPORT_BUCKET"],
            table=env["SKYPORT_TABLE"],
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            s3_endpoint=env.get("SKYPORT_S3_ENDPOINT") or None,
            dynamodb_endpoint=env.get("SKYPORT_DYNAMODB_ENDPOINT") or None,
            presign_expiry_seconds=expiry,
            blob_delivery=delivery,
            part_size=max(integer("SKYPORT_PART_SIZE", "part_size"), defaults["min_part_size"]),
            max_request_body=integer("SKYPORT_MAX_REQUEST_BODY", "max_request_body"),
            max_open_uploads=max_open_uploads,
            automatic_mount=automatic_mount == "on",
            auth=auth,
            # The token spec: expires_in at least 60 seconds.
            token_ttl_seconds=max(integer("SKYPORT_TOKEN_TTL", "token_ttl_seconds"), 60),
            refresh_token_ttl_seconds=integer("SKYPORT_REFRESH_TOKEN_TTL", "refresh_token_ttl_seconds"),
            token_service=env.get("SKYPORT_TOKEN_SERVICE") or defaults["token_service"],
            token_issuer=env.get("SKYPORT_TOKEN_ISSUER") or defaults["token_issuer"],
            token_realm=env.get("SKYPORT_TOKEN_REALM") or None,
            signing_key_secret=env.get("SKYPORT_SIGNING_KEY_SECRET") or None,
            signing_key_parameter=env.get("SKYPORT_SIGNING_KEY_PARAMETER") or None,
            signing_key_in_memory=env.get("SKYPORT_SIGNING_KEY_IN_MEMORY", "") == "on",
            admin_secret=env.get("SKYPORT_ADMIN_SECRET") or None,
            hook_secret_prefix=env.get("SKYPORT_HOOK_SECRET_PREFIX") or "",
            **_direct_upload_settings(env, defaults),
            **_upload_service_settings(env),
            immutability_cache_seconds=_immutability_cache_seconds(env, defaults),
            pull_record_seconds=_pull_record_seconds(env, defaults),
            gc_grace_seconds=_gc_grace_seconds(env, defaults),
            **_cache_settings(env, defaults),
            **_blob_cache_settings(env, defaults),
            **_scan_settings(env, defaults),
            **_scan_policy_settings(env, defaults),
            **_osv_settings(env, defaults),
        )


def _direct_upload_settings(env: Mapping[str, str], defaults: dict) -> dict:
    value = env.get("SKYPORT_DIRECT_URL_EXPIRES")
    seconds = int(value) if value else defaults["direct_url_seconds"]
    if not 1 <= seconds <= 604800:  # SigV4 presigned URLs live at most 7 days
        raise ValueError(f"SKYPORT_DIRECT_URL_EXPIRES must be 1..604800 seconds, not {seconds}")
    readers = int(env.get("SKYPORT_VERIFY_READERS") or defaults["verify_readers"])
    if not 1 <= readers <= 32:
        raise ValueError(f"SKYPORT_VERIFY_READERS must be 1..32, not {readers}")
    return {
        "direct_url_seconds": seconds,
        "verify_function": env.get("SKYPORT_VERIFY_FUNCTION") or None,
        "verify_readers": readers,
    }


def _base_url(name: str, value: str | None) -> str | None:
    """An absolute http(s) base URL without path, query or trailing slash; None if unset."""
    if not value:
        return None
    from urllib.parse import urlsplit

    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{name} must be a base URL such as https://uploads.example.net, not {value!r}")
    return url


def _upload_service_settings(env: Mapping[str, str]) -> dict:
    upload_endpoint = _base_url("SKYPORT_UPLOAD_ENDPOINT", env.get("SKYPORT_UPLOAD_ENDPOINT"))
    upload_key = env.get("SKYPORT_UPLOAD_KEY") or None
    upload_key_secret = env.get("SKYPORT_UPLOAD_KEY_SECRET") or None
    if upload_endpoint and not (upload_key or upload_key_secret):
        # Refused at start, not at the first push: Locations on the upload host need a capability.
        raise ValueError("SKYPORT_UPLOAD_ENDPOINT needs SKYPORT_UPLOAD_KEY_SECRET or SKYPORT_UPLOAD_KEY")
    return {
        "upload_endpoint": upload_endpoint,
        "upload_key": upload_key,
        "upload_key_secret": upload_key_secret,
        "registry_url": _base_url("SKYPORT_REGISTRY_URL", env.get("SKYPORT_REGISTRY_URL")),
    }


def _immutability_cache_seconds(env: Mapping[str, str], defaults: dict) -> int:
    value = env.get("SKYPORT_IMMUTABILITY_CACHE_SECONDS")
    if not value:
        return defaults["immutability_cache_seconds"]
    # ASCII digits only (int() also takes other Unicode digits): a typo fails at start.
    seconds = int(value) if value.isascii() and value.isdigit() else -1
    if not 0 <= seconds <= 3600:
        raise ValueError(f"SKYPORT_IMMUTABILITY_CACHE_SECONDS must be 0..3600 seconds, not {value[:20]!r}")
    return seconds


def _pull_record_seconds(env: Mapping[str, str], defaults: dict) -> int:
    value = env.get("SKYPORT_PULL_RECORD_SECONDS")
    if not value:
        return defaults["pull_record_seconds"]
    # ASCII digits only, as above: a typo fails at start, not at the first pull.
    seconds = int(value) if value.isascii() and value.isdigit() else -1
    if not 1 <= seconds <= 86400:
        raise ValueError(f"SKYPORT_PULL_RECORD_SECONDS must be 1..86400 seconds, not {value[:20]!r}")
    return seconds


def _blob_cache_settings(env: Mapping[str, str], defaults: dict) -> dict:
    def bounded(name: str, field_name: str, most: int) -> int:
        value = env.get(name)
        if not value:
            return defaults[field_name]
        # ASCII digits only, as above: a typo fails at start, not at the first pull.
        number = int(value) if value.isascii() and value.isdigit() else -1
        if not 0 <= number <= most:
            raise ValueError(f"{name} must be 0..{most}, not {value[:20]!r}")
        return number

    return {
        "blob_cache_entries": bounded("SKYPORT_BLOB_CACHE_ENTRIES", "blob_cache_entries", 10_000_000),
        "blob_cache_seconds": bounded("SKYPORT_BLOB_CACHE_SECONDS", "blob_cache_seconds", 3600),
    }


_DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str) -> int:
    """'24h', '90m', '30s', '0', '2d', '500ms' (no unit: seconds) -> milliseconds.
    ASCII digits only: int() would also take other Unicode digits."""
    match = _DURATION.fullmatch(text.strip()) if text.isascii() else None
    if match is None:
        raise ValueError(f"not a duration: {text[:40]!r} (e.g. 24h, 90m, 30s, 0)")
    return int(match.group(1)) * _UNIT_MS[match.group(2) or "s"]


def _gc_grace_seconds(env: Mapping[str, str], defaults: dict) -> int:
    value = env.get("SKYPORT_GC_GRACE")
    if not value:
        return defaults["gc_grace_seconds"]
    try:
        return parse_duration(value) // 1000
    except ValueError as error:
        raise ValueError(f"SKYPORT_GC_GRACE: {error}") from None


def _cache_settings(env: Mapping[str, str], defaults: dict) -> dict:
    """The pull-through cache's settings (issue 13), each ASCII digits within bounds."""

    def seconds(name: str, field_name: str, low: int, high: int) -> int:
        value = env.get(name)
        if not value:
            return defaults[field_name]
        number = int(value) if value.isascii() and value.isdigit() else -1
        if not low <= number <= high:
            raise ValueError(f"{name} must be {low}..{high} seconds, not {value[:20]!r}")
        return number

    return {
        "cache_tag_recheck_seconds": seconds(
            "SKYPORT_CACHE_TAG_RECHECK_SECONDS", "cache_tag_recheck_seconds", 0, 30 * 86400
        ),
        "cache_rules_seconds": seconds("SKYPORT_CACHE_RULES_SECONDS", "cache_rules_seconds", 0, 3600),
        "cache_fill_function": env.get("SKYPORT_CACHE_FILL_FUNCTION") or None,
        "cache_fill_wait_seconds": seconds(
            "SKYPORT_CACHE_FILL_WAIT_SECONDS", "cache_fill_wait_seconds", 0, 20
        ),
        "cache_upstream_timeout_seconds": seconds(
            "SKYPORT_CACHE_UPSTREAM_TIMEOUT_SECONDS", "cache_upstream_timeout_seconds", 1, 25
        ),
    }


def _scan_settings(env: Mapping[str, str], defaults: dict) -> dict:
    """The scan on push's settings (issue 14), each ASCII digits within bounds."""
    switch = (env.get("SKYPORT_SCAN_ON_PUSH") or "on").lower()
    if switch not in ("on", "off"):
        raise ValueError(f"SKYPORT_SCAN_ON_PUSH must be on or off, not {switch[:20]!r}")

    def number(name: str, field_name: str, low: int, high: int) -> int:
        value = env.get(name)
        if not value:
            return defaults[field_name]
        parsed = int(value) if value.isascii() and value.isdigit() else -1
        if not low <= parsed <= high:
            raise ValueError(f"{name} must be {low}..{high}, not {value[:20]!r}")
        return parsed

    return {
        "scan_on_push": switch == "on",
        "scan_lease_seconds": number("SKYPORT_SCAN_LEASE_SECONDS", "scan_lease_seconds", 60, 86400),
        "rescan_pulled_days": number("SKYPORT_RESCAN_PULLED_DAYS", "rescan_pulled_days", 1, 3650),
        "scan_max_layer_bytes": number("SKYPORT_SCAN_MAX_LAYER_BYTES", "scan_max_layer_bytes", 0, 2**50),
        "scan_max_total_bytes": number("SKYPORT_SCAN_MAX_TOTAL_BYTES", "scan_max_total_bytes", 0, 2**50),
    }


def _scan_policy_settings(env: Mapping[str, str], defaults: dict) -> dict:
    """Scan policies' cache (issue 14): ASCII digits, 0..3600 seconds."""
    value = env.get("SKYPORT_SCAN_POLICY_CACHE_SECONDS")
    if not value:
        return {"scan_policy_cache_seconds": defaults["scan_policy_cache_seconds"]}
    seconds = int(value) if value.isascii() and value.isdigit() else -1
    if not 0 <= seconds <= 3600:
        raise ValueError(f"SKYPORT_SCAN_POLICY_CACHE_SECONDS must be 0..3600 seconds, not {value[:20]!r}")
    return {"scan_policy_cache_seconds": seconds}


def _osv_settings(env: Mapping[str, str], defaults: dict) -> dict:
    """Vulnerability data (issue 14): the mirror's source and ecosystems, the scans' refresh."""
    from .vulnerabilities.osv import ECOSYSTEM_NAME, is_url_source

    source = (env.get("SKYPORT_OSV_SOURCE") or "").strip()
    if source and "://" in source and not is_url_source(source):
        raise ValueError(f"SKYPORT_OSV_SOURCE must be an http(s) URL or a directory, not {source[:60]!r}")
    ecosystems = defaults["osv_ecosystems"]
    if env.get("SKYPORT_OSV_ECOSYSTEMS"):
        ecosystems = tuple(name.strip() for name in env["SKYPORT_OSV_ECOSYSTEMS"].split(",") if name.strip())
        bad = [name for name in ecosystems if not ECOSYSTEM_NAME.fullmatch(name)]
        if bad or not ecosystems:
            raise ValueError(f"SKYPORT_OSV_ECOSYSTEMS: not OSV ecosystem names: {', '.join(bad)[:80]!r}")
    refresh = env.get("SKYPORT_OSV_REFRESH_SECONDS")
    seconds = defaults["osv_refresh_seconds"]
    if refresh:
        # ASCII digits only, as above: a typo fails at start.
        seconds = int(refresh) if refresh.isascii() and refresh.isdigit() else -1
        if not 0 <= seconds <= 86400:
            raise ValueError(f"SKYPORT_OSV_REFRESH_SECONDS must be 0..86400 seconds, not {refresh[:20]!r}")
    return {"osv_source": source, "osv_ecosystems": ecosystems, "osv_refresh_seconds": seconds}
