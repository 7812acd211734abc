"""The pull-through cache on the table (keys: ``storage/keys.py``, "Pull-through cache";
the cache's design: skyport/pull_through/__init__.py): its rules, the upstream check time
of a cached tag, and the fill leases."""

from __future__ import annotations

from typing import Any

from .. import keys
from ..ports import ManifestRecord
from .manifests import _manifest_record
from .table import N, S, Table, conditional, get_int, get_str

# A rule's prefix is its id: a second rule for the same prefix is refused, never merged.
CACHE_RULE_IS_NEW = "attribute_not_exists(PK)"
# A tag's check time is written only while the tag still names the manifest that was
# checked: a refresh racing an upstream move never stamps the old digest as fresh.
TAG_STILL_NAMES = "digest = :digest"
# One fill per repository and digest at a time: the lease is new, or its holder's time is up
# (a fill that died is taken over once its lease expires).
FILL_LEASE_FREE = "attribute_not_exists(PK) OR lease_until < :now"
# A fill releases only its own lease.
FILL_LEASE_HELD_BY = "lease_owner = :owner"
# How long, past its lease, a lease item lingers before DynamoDB's TTL removes it.
LEASE_LINGER_SECONDS = 3600
# The attribute of a TAG item saying when the cache last asked upstream about it.
CHECKED = "upstream_checked_ms"


class DynamoPullThroughStore:
    def __init__(self, client: Any, table: str) -> None:
        self._table = Table(client, table)

    # --- rules ------------------------------------------------------------------------

    def add_rule(self, fields: dict[str, Any]) -> bool:
        item: dict[str, Any] = {
            **keys.cache_rule(fields["prefix"]),
            "upstream": S(fields["upstream"]),
            "insecure": {"BOOL": bool(fields["insecure"])},
            "mirror": {"BOOL": bool(fields["mirror"])},
            "created_ms": N(fields["created_ms"]),
        }
        for name in ("username", "password_env", "secret"):
            if fields.get(name):
                item[name] = S(fields[name])
        ok, _, _ = conditional(lambda: self._table.put(item, CACHE_RULE_IS_NEW))
        return ok

    def list_rules(self) -> list[dict[str, Any]]:
        return [_rule_fields(item) for item in self._table.query(keys.CACHE, keys.CACHE_RULE_PREFIX)]

    def remove_rule(self, prefix: str) -> bool:
        return self._table.delete_existing(keys.cache_rule(prefix))

    # --- cached tags ------------------------------------------------------------------

    def cached_tag(self, repository: str, tag: str) -> tuple[ManifestRecord, int] | None:
        """The manifest the tag names and when upstream was last asked about it (ms)."""
        item = self._table.get(keys.tag(repository, tag))
        return (_manifest_record(item), get_int(item, CHECKED)) if item else None

    def mark_checked(self, repository: str, tag: str, digest: str, now_ms: int) -> bool:
        """Stamp the tag as checked upstream now, while it still names ``digest``."""
        ok, _, _ = conditional(
            lambda: self._table.call(
                "update_item",
                TableName=self._table.name,
                Key=keys.tag(repository, tag),
                UpdateExpression=f"SET {CHECKED} = :now",
                ConditionExpression=TAG_STILL_NAMES,
                ExpressionAttributeValues={":now": N(now_ms), ":digest": S(digest)},
            )
        )
        return ok

    # --- fill leases ------------------------------------------------------------------

    def take_fill_lease(self, repository: str, digest: str, owner: str, now: int, seconds: int) -> bool:
        item = {
            **keys.cache_fill_lease(repository, digest),
            "lease_owner": S(owner),
            "lease_until": N(now + seconds),
            keys.TTL_ATTRIBUTE: N(now + seconds + LEASE_LINGER_SECONDS),
        }
        ok, _, _ = conditional(lambda: self._table.put(item, FILL_LEASE_FREE, {":now": N(now)}))
        return ok

    def release_fill_lease(self, repository: str, digest: str, owner: str) -> None:
        conditional(
            lambda: self._table.call(
                "delete_item",
                TableName=self._table.name,
                Key=keys.cache_fill_lease(repository, digest),
                ConditionExpression=FILL_LEASE_HELD_BY,
                ExpressionAttributeValues={":owner": S(owner)},
            )
        )


def _rule_fields(item: dict) -> dict[str, Any]:
    return {
        "prefix": item[keys.SK]["S"].removeprefix(keys.CACHE_RULE_PREFIX),
        "upstream": get_str(item, "upstream") or "",
        "insecure": bool(item.get("insecure", {}).get("BOOL")),
        "mirror": bool(item.get("mirror", {}).get("BOOL")),
        "created_ms": get_int(item, "created_ms"),
        "username": get_str(item, "username"),
        "password_env": get_str(item, "password_env"),
        "secret": get_str(item, "secret"),
    }
