"""Replication rules: what is replicated, and where to.

A rule has:

- a **repository pattern** (required): a repository name in which ``*`` matches any run
  of characters, ``/`` included (as in grants: ``team/*`` is every repository under
  ``team/``, at any depth; ``*`` alone is every repository), and ``?`` exactly one
  character other than ``/``. Other characters are literal and must be those of the
  distribution-spec name grammar (``a-z 0-9 . _ - /``); the pattern is at most 255
  characters, neither starts nor ends with ``/``, and holds no empty component (``//``).
- a **tag pattern** (optional), in the same syntax over tag characters (``A-Za-z0-9_.-``,
  at most 128): ``v*``, ``release-?``. With one, only tags matching it replicate (tag
  events), with the manifests they name; manifests pushed without a tag do not. Without
  one, every tag and every manifest, tagged or not (referrers such as signatures too).
- a **destination** URL (``destinations.py`` documents both kinds):
  ``http(s)://host[:port][/prefix]`` for any OCI registry, or
  ``skyport://BUCKET/TABLE?region=R[&endpoint=URL][&role=ARN]`` for another Skyport.
  The URL never carries a secret: user info is refused.
- **deletes**: whether tag and manifest deletions replicate (default: no).
- **insecure**: plain http, or https without verifying the certificate.
- **credentials**: whether a secret (Secrets Manager, ``settings.hook_secrets +
  "replication/<rule id>"``, JSON ``{"username", "password"}``) holds the destination's
  login. The secret is never stored in the table, never printed, never in an error.
"""

from __future__ import annotations

import functools
import re
import secrets
from urllib.parse import parse_qs, urlsplit

from ..reference import MAX_NAME_LENGTH

MAX_TAG_PATTERN = 128
_NAME_PATTERN_CHARACTERS = re.compile(r"[a-z0-9._/*?-]+")
_TAG_PATTERN_CHARACTERS = re.compile(r"[A-Za-z0-9_.*?-]+")
_RULE_ID = re.compile(r"[a-f0-9]{12}")
_PREFIX = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")


class RuleInvalid(ValueError):
    """A rule that cannot be stored: the message says which part and why."""


def new_rule_id() -> str:
    return secrets.token_hex(6)


def validate_rule_id(rule_id: str) -> str:
    if not _RULE_ID.fullmatch(rule_id):
        raise RuleInvalid(
            f"not a rule id (12 hexadecimal digits, as `skyport replication list` shows): {rule_id[:40]!r}"
        )
    return rule_id


def validate_repository_pattern(pattern: str) -> str:
    if not pattern or len(pattern) > MAX_NAME_LENGTH:
        raise RuleInvalid(f"the repository pattern must be 1 to {MAX_NAME_LENGTH} characters")
    if not _NAME_PATTERN_CHARACTERS.fullmatch(pattern):
        raise RuleInvalid(
            f"bad repository pattern {pattern[:80]!r}: use lower-case letters, digits, '.', '_', '-', "
            "'/' and the wildcards '*' (any characters) and '?' (one character), e.g. 'team/*'"
        )
    if pattern.startswith("/") or pattern.endswith("/") or "//" in pattern:
        raise RuleInvalid(
            f"bad repository pattern {pattern[:80]!r}: an empty path component ('/' at an end, or '//')"
        )
    return pattern


def validate_tag_pattern(pattern: str) -> str:
    if not pattern or len(pattern) > MAX_TAG_PATTERN:
        raise RuleInvalid(f"the tag pattern must be 1 to {MAX_TAG_PATTERN} characters")
    if not _TAG_PATTERN_CHARACTERS.fullmatch(pattern):
        raise RuleInvalid(
            f"bad tag pattern {pattern[:80]!r}: use letters, digits, '_', '.', '-' and the wildcards "
            "'*' and '?', e.g. 'v*'"
        )
    return pattern


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, any_character: str) -> re.Pattern[str]:
    parts = []
    for character in pattern:
        if character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(any_character)
        else:
            parts.append(re.escape(character))
    return re.compile("".join(parts), re.DOTALL)


def repository_matches(pattern: str, repository: str) -> bool:
    return _compiled(pattern, "[^/]").fullmatch(repository) is not None


def tag_matches(pattern: str, tag: str) -> bool:
    return _compiled(pattern, ".").fullmatch(tag) is not None


# --- destinations -------------------------------------------------------------------

OCI_SCHEMES = ("http", "https")
SKYPORT_SCHEME = "skyport"


def validate_destination(url: str) -> str:
    """The destination URL, checked (module docstring; destinations.py), without a
    trailing slash. Raises RuleInvalid saying what is wrong."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        raise RuleInvalid(f"not a destination URL: {error}") from None
    if parts.username is not None or parts.password is not None:
        raise RuleInvalid(
            "the destination URL must not carry credentials: use --username and --password-env "
            "(the password goes to Secrets Manager)"
        )
    if parts.fragment:
        raise RuleInvalid("the destination URL has a fragment ('#...')")
    if parts.scheme in OCI_SCHEMES:
        if not parts.hostname:
            raise RuleInvalid(f"the destination URL names no host: {url[:200]!r}")
        if parts.query:
            raise RuleInvalid("an OCI destination URL takes no query: http(s)://host[:port][/prefix]")
        prefix = parts.path.strip("/")
        if prefix and not _PREFIX.fullmatch(prefix):
            raise RuleInvalid(f"the destination's prefix {prefix[:80]!r} is not a repository name")
        return f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
    if parts.scheme == SKYPORT_SCHEME:
        skyport_destination(url)
        return url.rstrip("/")
    raise RuleInvalid(
        f"unknown destination {url[:200]!r}: http(s)://host[:port][/prefix] (an OCI registry) or "
        "skyport://BUCKET/TABLE?region=R[&endpoint=URL][&role=ARN] (another Skyport)"
    )


def skyport_destination(url: str) -> dict[str, str]:
    """The parts of ``skyport://BUCKET/TABLE?region=R[&endpoint=URL][&role=ARN]``:
    bucket, table, region, and endpoint and role when given."""
    parts = urlsplit(url)
    bucket, table = parts.netloc, parts.path.strip("/")
    if not _BUCKET.fullmatch(bucket):
        raise RuleInvalid(f"skyport destination: {bucket[:80]!r} is not an S3 bucket name")
    if not _TABLE.fullmatch(table):
        raise RuleInvalid(f"skyport destination: {table[:80]!r} is not a DynamoDB table name")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise RuleInvalid("skyport destination: its query is not key=value pairs") from None
    unknown = set(query) - {"region", "endpoint", "role"}
    if unknown:
        raise RuleInvalid(
            f"skyport destination: unknown parameters {sorted(unknown)} (region, endpoint, role)"
        )
    if any(len(values) != 1 for values in query.values()):
        raise RuleInvalid("skyport destination: a parameter is given twice")
    found = {name: values[0] for name, values in query.items()}
    if not _REGION.fullmatch(found.get("region", "")):
        raise RuleInvalid("skyport destination: region=R is required (an AWS region such as eu-west-1)")
    endpoint = found.get("endpoint")
    if endpoint is not None:
        endpoint_parts = urlsplit(endpoint)
        if endpoint_parts.scheme not in OCI_SCHEMES or not endpoint_parts.netloc or endpoint_parts.username:
            raise RuleInvalid("skyport destination: endpoint= must be an http(s) URL without credentials")
    role = found.get("role")
    if role is not None and not _ROLE.fullmatch(role):
        raise RuleInvalid("skyport destination: role= must be an IAM role ARN")
    return {"bucket": bucket, "table": table, **found}
