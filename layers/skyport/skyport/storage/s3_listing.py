"""A paged listing of the bucket's objects under a prefix, for the garbage collector's
orphan sweep (skyport/gc): one ListObjectsV2 page per call, resumable by its token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ports import StorageUnavailable


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    last_modified_ms: int


class S3Listing:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def page(self, prefix: str, token: str | None, limit: int) -> tuple[list[ListedObject], str | None]:
        """Objects under ``prefix``, at most ``limit``, after ``token``; and the next token
        (None at the end)."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": limit}
        if token:
            request["ContinuationToken"] = token
        try:
            answer = self._client.list_objects_v2(**request)
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"S3 list_objects_v2: {error}") from error
        objects = [
            ListedObject(
                key=entry["Key"],
                size=int(entry.get("Size", 0)),
                last_modified_ms=int(entry["LastModified"].timestamp() * 1000),
            )
            for entry in answer.get("Contents", [])
        ]
        return objects, answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
