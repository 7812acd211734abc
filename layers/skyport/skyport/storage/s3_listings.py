"""UploadLeftovers on S3 (see ports.UploadLeftovers): the listings the upload expiry
sweep needs. Apart from s3.py because only the sweep's role may list the bucket
(s3:ListBucket, s3:ListBucketMultipartUploads); the API's never does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .ports import ListedObject, ObjectMissing, PendingMultipart
from .s3 import S3ObjectStore

LIST_PAGE = 1000  # S3's own maximum for both listings


class S3Listings(S3ObjectStore):
    def multipart_uploads(self, prefix: str) -> Iterator[PendingMultipart]:
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxUploads": LIST_PAGE}
        while True:
            page = self._call("list_multipart_uploads", **kwargs)
            for upload in page.get("Uploads", []):
                yield PendingMultipart(upload["Key"], upload["UploadId"], upload["Initiated"].timestamp())
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["UploadIdMarker"] = page["NextUploadIdMarker"]

    def objects(self, prefix: str) -> Iterator[ListedObject]:
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_PAGE}
        while True:
            page = self._call("list_objects_v2", **kwargs)
            for found in page.get("Contents", []):
                yield ListedObject(found["Key"], int(found["Size"]), found["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def multipart_parts(self, key: str, multipart_id: str) -> tuple[int, float]:
        size, newest = 0, 0.0
        marker = 0
        try:
            while True:  # ListParts answers at most 1,000 parts a page
                page = self._call(
                    "list_parts", Key=key, UploadId=multipart_id, PartNumberMarker=marker, MaxParts=LIST_PAGE
                )
                for part in page.get("Parts", []):
                    size += int(part["Size"])
                    newest = max(newest, part["LastModified"].timestamp())
                if not page.get("IsTruncated"):
                    return size, newest
                marker = int(page["NextPartNumberMarker"])
        except ObjectMissing:
            return 0, 0.0
