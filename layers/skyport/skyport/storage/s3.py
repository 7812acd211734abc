"""ObjectStore on S3 (see ports.ObjectStore)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ports import ObjectMissing, StorageUnavailable, UploadedPart
from .presign import S3Presigner

# NoSuchUpload: a multipart upload already completed or aborted (abort is idempotent).
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
# What S3 answers for an absent key to a role without s3:ListBucket (see ports.ObjectStore).
_DENIED = {"AccessDenied", "403"}
STREAM_CHUNK = 1024 * 1024
READ_ATTEMPTS = 3  # GetObject whose body broke off, asked again (see read)
# S3: CopyObject copies at most 5 GiB; bigger objects are copied part by part (UploadPartCopy).
COPY_OBJECT_LIMIT = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024**2


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def _call(self, operation: str, *, may_be_missing: bool = False, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(Bucket=self._bucket, **kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _MISSING or (may_be_missing and code in _DENIED):
                raise ObjectMissing(kwargs.get("Key", "")) from error
            raise StorageUnavailable(f"S3 {operation}: {code}") from error
        except BotoCoreError as error:
            raise StorageUnavailable(f"S3 {operation}: {error}") from error

    @cached_property
    def _presigner(self) -> S3Presigner | None:
        return S3Presigner.for_client(self._client, self._bucket)

    def presign_get(self, key: str, expires_in: int) -> str:
        # Local signing: no network call. Our own SigV4 presigner (storage/presign.py)
        # gives botocore's URL in a fraction of the time; botocore for any client
        # configuration it does not reproduce.
        presigner = self._presigner
        if presigner is not None:
            return presigner.presign_get(key, expires_in)
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_in
        )

    def read(self, key: str, *, may_be_missing: bool = False) -> bytes:
        # The SDK retries a failed call, but not a body that breaks off after S3 answered
        # (botocore's IncompleteReadError or ResponseStreamingError, a reset socket): a
        # read is idempotent, so it is asked again here, then reported as retryable.
        broken: Exception | None = None
        for _ in range(READ_ATTEMPTS):
            body = self._call("get_object", may_be_missing=may_be_missing, Key=key)["Body"]
            try:
                return body.read()
            except (BotoCoreError, OSError) as error:
                broken = error
            finally:
                body.close()
        raise StorageUnavailable(f"S3 get_object: body of {key}: {broken}") from broken

    def stream(self, key: str) -> Iterator[bytes]:
        # GetObject now, not at the first chunk: a missing object raises ObjectMissing to
        # the caller, before a response has started. Missing is legitimate here (the
        # object deleted after the index was read), hence 403 read as missing too.
        body = self._call("get_object", may_be_missing=True, Key=key)["Body"]
        return self._chunks(body)

    @staticmethod
    def _chunks(body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(STREAM_CHUNK)
        finally:
            body.close()

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=key, Body=data)

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def copy(self, source_key: str, key: str) -> None:
        self._call(
            "copy_object",
            may_be_missing=True,
            Key=key,
            CopySource={"Bucket": self._bucket, "Key": source_key},
        )

    def start_multipart(self, key: str) -> str:
        return self._call("create_multipart_upload", Key=key)["UploadId"]

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        response = self._call("upload_part", Key=key, UploadId=multipart_id, PartNumber=number, Body=data)
        return response["ETag"]

    def copy_part(
        self,
        key: str,
        multipart_id: str,
        number: int,
        source_key: str,
        first: int | None = None,
        last: int | None = None,
    ) -> str:
        extra = {} if first is None else {"CopySourceRange": f"bytes={first}-{last}"}
        response = self._call(
            "upload_part_copy",
            may_be_missing=True,
            Key=key,
            UploadId=multipart_id,
            PartNumber=number,
            CopySource={"Bucket": self._bucket, "Key": source_key},
            **extra,
        )
        return response["CopyPartResult"]["ETag"]

    def complete_multipart(self, key: str, multipart_id: str, etags: Sequence[str]) -> None:
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in enumerate(etags, start=1)]
        self._call(
            "complete_multipart_upload", Key=key, UploadId=multipart_id, MultipartUpload={"Parts": parts}
        )

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        try:
            self._call("abort_multipart_upload", Key=key, UploadId=multipart_id)
        except ObjectMissing:
            pass  # already gone: aborting is idempotent for us

    # --- direct uploads (skyport.direct_uploads) ---------------------------------------

    def presign_upload_part(self, key: str, multipart_id: str, number: int, expires_in: int) -> str:
        """A presigned UploadPart URL: it names this key, this multipart upload and this
        part number only (all three are in the signed query), and dies after
        ``expires_in`` seconds or with the signing credentials, whichever comes first.
        Signed by botocore (SigV4: the client is s3v4, storage/clients.py), locally."""
        return self._client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self._bucket, "Key": key, "UploadId": multipart_id, "PartNumber": number},
            ExpiresIn=expires_in,
        )

    def list_parts(self, key: str, multipart_id: str) -> list[UploadedPart]:
        parts: list[UploadedPart] = []
        marker = 0
        while True:  # ListParts answers at most 1,000 parts a page
            response = self._call(
                "list_parts", Key=key, UploadId=multipart_id, PartNumberMarker=marker, MaxParts=1000
            )
            parts.extend(
                UploadedPart(int(part["PartNumber"]), int(part["Size"]), part["ETag"])
                for part in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            marker = int(response["NextPartNumberMarker"])

    def size_of(self, key: str) -> int:
        return int(self._call("head_object", Key=key)["ContentLength"])

    def read_range(self, key: str, first: int, last: int) -> bytes:
        # As read(): a body that breaks off is asked again, then reported as retryable.
        broken: Exception | None = None
        for _ in range(READ_ATTEMPTS):
            body = self._call("get_object", Key=key, Range=f"bytes={first}-{last}")["Body"]
            try:
                data = body.read()
                if len(data) == last - first + 1:
                    return data
                broken = OSError(f"short range: {len(data)} bytes")
            except (BotoCoreError, OSError) as error:
                broken = error
            finally:
                body.close()
        raise StorageUnavailable(f"S3 get_object: range of {key}: {broken}") from broken

    # --- replication to another Skyport (skyport.replication.destinations) -------------

    def copy_from_bucket(
        self,
        source_bucket: str,
        source_key: str,
        key: str,
        size: int,
        *,
        single_copy_limit: int = COPY_OBJECT_LIMIT,
        part_size: int = COPY_PART_SIZE,
    ) -> None:
        """Copy an object of ``size`` bytes from another bucket into this one, server-side:
        one CopyObject up to S3's 5 GiB limit for it, else a multipart upload of
        UploadPartCopy ranges (parts of 5 MiB to 5 GiB, at most 10,000). No byte passes
        through this process. Raises ObjectMissing when the source is gone. (The limits
        are parameters so that tests reach the multipart path with small objects.)"""
        source = {"Bucket": source_bucket, "Key": source_key}
        if size <= single_copy_limit:
            self._call("copy_object", may_be_missing=True, Key=key, CopySource=source)
            return
        part_size = max(part_size, -(-size // 10_000))
        multipart_id = self.start_multipart(key)
        try:
            etags = []
            for number, first in enumerate(range(0, size, part_size), start=1):
                last = min(first + part_size, size) - 1
                response = self._call(
                    "upload_part_copy",
                    may_be_missing=True,
                    Key=key,
                    UploadId=multipart_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                etags.append(response["CopyPartResult"]["ETag"])
            self.complete_multipart(key, multipart_id, etags)
        except BaseException:
            self.abort_multipart(key, multipart_id)
            raise
