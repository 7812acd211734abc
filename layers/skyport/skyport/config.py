"""Settings, read once from an environment mapping (never from os.environ directly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

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
    # Manifest bodies up to this size live inline in DynamoDB items (400 KB
    # cap, and the tag item holds a copy), bigger ones in S3.
    inline_manifest_limit: int = 128 * 1024
    # Upload sessions expire (DynamoDB TTL) a week after they start, like
    # Distribution's upload purging; the bucket's lifecycle rules match.
    upload_ttl_seconds: int = 7 * 24 * 3600
    # How long one request may hold an upload session before another may
    # take it over (a crashed writer must not block the upload for ever).
    upload_lease_seconds: int = 900
    # Default page size for tags and catalog when the client gives no `n`.
    default_page_size: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        defaults = {f.name: f.default for f in fields(cls)}

        def integer(name: str, field_name: str) -> int:
            value = env.get(name)
            return int(value) if value else defaults[field_name]

        delivery = env.get("SKYPORT_BLOB_DELIVERY", "redirect")
        if delivery not in ("redirect", "proxy"):
            raise ValueError(f"SKYPORT_BLOB_DELIVERY must be redirect or proxy, not {delivery!r}")
        return cls(
            bucket=env["SKYPORT_BUCKET"],
            table=env["SKYPORT_TABLE"],
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            s3_endpoint=env.get("SKYPORT_S3_ENDPOINT") or None,
            dynamodb_endpoint=env.get("SKYPORT_DYNAMODB_ENDPOINT") or None,
            presign_expiry_seconds=integer("SKYPORT_PRESIGN_EXPIRES", "presign_expiry_seconds"),
            blob_delivery=delivery,
            part_size=max(integer("SKYPORT_PART_SIZE", "part_size"), defaults["min_part_size"]),
        )
