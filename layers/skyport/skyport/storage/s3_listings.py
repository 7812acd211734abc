"""Listings of the bucket (see ports.UploadLeftovers): what the upload expiry sweep and
the garbage collector's orphan sweep read of S3 beyond the ObjectStore. Apart from s3.py
because only their roles may list the bucket (s3:ListBucket,
s3:ListBucketMultipartUploads); the API's never does."""

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
        token: str | None = None
        while True:
            listed, token = self.objects_page(prefix, token, LIST_PAGE)
            yield from listed
            if token is None:
                return

    def objects_page(
        self, prefix: str, token: str | None, limit: int = LIST_PAGE
    ) -> tuple[list[ListedObject], str | None]:
        """One page of objects under ``prefix`` (at most ``limit``), after ``token``; and
        the next page's token, None at the end: a run that stops between pages resumes
        from the token (the garbage collector's orphan sweep saves it)."""
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": limit}
        if token:
            kwargs["ContinuationToken"] = token
        page = self._call("list_objects_v2", **kwargs)
        listed = [
            ListedObject(found["Key"], int(found.get("Size", 0)), found["LastModified"].timestamp())
            for found in page.get("Contents", [])
        ]
        return listed, page.get("NextContinuationToken") if page.get("IsTruncated") else None

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
