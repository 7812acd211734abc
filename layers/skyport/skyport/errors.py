"""THE table of OCI error codes, and the exceptions that carry them.

Every error the registry reports is one row of ``ERROR_CODES``: the code the
distribution-spec names (section "Error Codes"), a default message, and the
HTTP status it is answered with. Code that raises picks an exception class;
it never picks a status. The web layer has a single handler that renders any
:class:`RegistryError` as the spec's JSON envelope::

    {"errors": [{"code": "...", "message": "...", "detail": ...}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int
    message: str


ERROR_CODES: dict[str, ErrorCode] = {
    row.code: row
    for row in (
        # distribution-spec v1.1, "Error Codes" (code-1 … code-14)
        ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry"),
        ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
        ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"),
        ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
        ErrorCode("MANIFEST_BLOB_UNKNOWN", 404, "manifest references a manifest or blob unknown to registry"),
        ErrorCode("MANIFEST_INVALID", 400, "manifest invalid"),
        ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
        ErrorCode("NAME_INVALID", 400, "invalid repository name"),
        ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry"),
        ErrorCode("SIZE_INVALID", 400, "provided length did not match content length"),
        ErrorCode("UNAUTHORIZED", 401, "authentication required"),
        ErrorCode("DENIED", 403, "requested access to the resource is denied"),
        ErrorCode("UNSUPPORTED", 405, "the operation is unsupported"),
        ErrorCode("TOOMANYREQUESTS", 429, "too many requests"),
        # Codes Distribution adds beyond the spec's list; clients know them.
        ErrorCode("TAG_INVALID", 400, "manifest tag did not match URI"),
        ErrorCode("RANGE_INVALID", 416, "invalid content range"),
        ErrorCode("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"),
        # Skyport's own, for statuses the spec requires without naming a code.
        ErrorCode("PAYLOAD_TOO_LARGE", 413, "request body too large"),
        ErrorCode("NOT_FOUND", 404, "no such endpoint"),
        ErrorCode("UPLOAD_BUSY", 409, "another request is writing to this upload"),
        ErrorCode("UNAVAILABLE", 503, "storage is temporarily unavailable, retry"),
        # Scanning (issue 14): the scan extension asked of an image no scan has reached yet.
        ErrorCode("SCAN_UNKNOWN", 404, "the image has not been scanned yet"),
        ErrorCode("UNKNOWN", 500, "unknown error"),
    )
}


class RegistryError(Exception):
    """Base of every error the registry reports to a client.

    ``detail`` is free-form JSON-able data for the envelope. An error the spec
    answers with response headers carries what they are made of, not the headers
    (the core speaks no HTTP): see :class:`RangeInvalid`, :class:`TooManyRequests`.
    """

    code_name: ClassVar[str] = ""

    def __init__(
        self,
        detail: Any = None,
        *,
        message: str | None = None,
    ) -> None:
        self.code = ERROR_CODES[self.code_name]
        self.message = message or self.code.message
        self.detail = detail
        super().__init__(f"{self.code.code}: {self.message}")

    @property
    def status(self) -> int:
        return self.code.status

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def _error(name: str) -> type[RegistryError]:
    # One exception class per row, named after the code in CamelCase.
    class_name = "".join(part.capitalize() for part in name.split("_"))
    return type(class_name, (RegistryError,), {"code_name": name, "__module__": __name__})


BlobUnknown = _error("BLOB_UNKNOWN")
BlobUploadInvalid = _error("BLOB_UPLOAD_INVALID")
BlobUploadUnknown = _error("BLOB_UPLOAD_UNKNOWN")
DigestInvalid = _error("DIGEST_INVALID")
ManifestBlobUnknown = _error("MANIFEST_BLOB_UNKNOWN")
ManifestInvalid = _error("MANIFEST_INVALID")
ManifestUnknown = _error("MANIFEST_UNKNOWN")
NameInvalid = _error("NAME_INVALID")
NameUnknown = _error("NAME_UNKNOWN")
SizeInvalid = _error("SIZE_INVALID")
Unauthorized = _error("UNAUTHORIZED")
Denied = _error("DENIED")
Unsupported = _error("UNSUPPORTED")
TagInvalid = _error("TAG_INVALID")
PaginationNumberInvalid = _error("PAGINATION_NUMBER_INVALID")
PayloadTooLarge = _error("PAYLOAD_TOO_LARGE")
NotFound = _error("NOT_FOUND")
UploadBusy = _error("UPLOAD_BUSY")
Unknown = _error("UNKNOWN")
ScanUnknown = _error("SCAN_UNKNOWN")


@dataclass(frozen=True, slots=True)
class UploadPosition:
    """Where an upload stands: ``offset`` bytes received by upload ``upload_id`` of
    ``repository``."""

    repository: str
    upload_id: str
    offset: int


class RangeInvalid(RegistryError):
    """RANGE_INVALID. On a chunk of a known upload it carries ``upload``, where that
    upload stands: the 416 must tell the client where to resume (distribution-spec,
    "Pushing a blob in chunks": the response has ``Range`` and ``Location``)."""

    code_name = "RANGE_INVALID"

    def __init__(
        self, detail: Any = None, *, message: str | None = None, upload: UploadPosition | None = None
    ) -> None:
        super().__init__(detail, message=message)
        self.upload = upload


class TooManyRequests(RegistryError):
    """TOOMANYREQUESTS; ``retry_after``, when known, is how many seconds the client
    should wait (answered as ``Retry-After``, RFC 9110 section 10.2.3)."""

    code_name = "TOOMANYREQUESTS"

    def __init__(
        self, detail: Any = None, *, message: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail, message=message)
        self.retry_after = retry_after


class Unavailable(RegistryError):
    """UNAVAILABLE (503): storage, or a pull-through cache's upstream, cannot answer now;
    ``retry_after``, when known, is answered as ``Retry-After`` (RFC 9110 section 10.2.3)."""

    code_name = "UNAVAILABLE"

    def __init__(
        self, detail: Any = None, *, message: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail, message=message)
        self.retry_after = retry_after


# --- tag immutability (issue 12: skyport/immutability.py) ---------------------------------

IMMUTABLE_TAG_ACTIONS = ("overwrite", "delete", "delete manifest", "delete referenced")


def immutable_tag(
    repository: str, tag: str, action: str, rule: dict[str, Any], digest: str | None = None
) -> RegistryError:
    """DENIED (403) for a change an immutability rule forbids; nothing was changed.
    ``action``: one of IMMUTABLE_TAG_ACTIONS (moving the tag to ``digest``, deleting it by
    tag, deleting the manifest it names, deleting by ``digest`` a manifest or blob its
    image uses). The detail's shape::

        {"reason": "tag is immutable", "repository": ..., "tag": ..., "action": ...,
         "digest": the digest pushed (overwrite) or deleted (delete referenced),
         "rule": {"id": "im-0123abcd", "repositories": "team/*", "exclude": ["latest"]}}
    """
    detail: dict[str, Any] = {"reason": "tag is immutable", "repository": repository, "tag": tag}
    detail["action"] = action
    if digest is not None:
        detail["digest"] = digest
    detail["rule"] = {key: rule[key] for key in ("id", "repositories", "exclude")}
    excluded = f" except {', '.join(rule['exclude'])}" if rule["exclude"] else ""
    where = f"immutability rule {rule['id']} ({rule['repositories']}{excluded})"
    if action == "overwrite":
        message = f"tag {tag} of {repository} is immutable ({where}): push the new image under a new tag"
    elif action == "delete":
        message = f"tag {tag} of {repository} is immutable ({where}): it cannot be deleted"
    elif action == "delete referenced":
        message = (
            f"{digest} is part of the image tag {tag} of {repository} names, which is immutable "
            f"({where}): it cannot be deleted"
        )
    else:
        message = (
            f"the manifest is named by tag {tag} of {repository}, which is immutable ({where}): "
            "it cannot be deleted"
        )
    return Denied(detail, message=message)
