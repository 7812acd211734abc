"""The one error handler: every failure leaves as the spec's JSON envelope."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from skyport.errors import (
    BlobUploadInvalid,
    NotFound,
    RangeInvalid,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unknown,
    Unsupported,
)
from skyport.storage.ports import StorageUnavailable
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .routes.uploads import range_header, session_location, upload_location

logger = logging.getLogger("skyport.api")


class Challenge(Unauthorized):
    """UNAUTHORIZED raised by the function's authorizer, with the challenge the 401
    must carry as ``WWW-Authenticate`` (Docker token spec, "How to authenticate")."""

    def __init__(self, detail: object = None, *, message: str | None = None, challenge: str) -> None:
        super().__init__(detail, message=message)
        self.challenge = challenge


def _headers(error: RegistryError, request: Request | None) -> dict[str, str]:
    """The response headers the spec requires with ``error``, from what it carries."""
    if isinstance(error, RangeInvalid) and error.upload is not None:
        # distribution-spec: a 416 on an upload carries Range and Location, so the
        # client can resume.
        upload = error.upload
        return {
            "Range": range_header(upload.offset),
            "Location": session_location(request, upload.repository, upload.upload_id)
            if request is not None
            else upload_location(upload.repository, upload.upload_id),
        }
    if isinstance(error, (TooManyRequests, Unavailable)) and error.retry_after is not None:
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Challenge):
        return {"WWW-Authenticate": error.challenge}
    return {}


def render(error: RegistryError, request: Request | None = None) -> Response:
    """The envelope; ``request`` (when there is one) shapes the Location of a 416 as that
    request's other Locations (the upload service keeps the capability in them)."""
    return Response(
        content=json.dumps(error.envelope(), separators=(",", ":")).encode(),
        status_code=error.status,
        media_type="application/json",
        headers=_headers(error, request),
    )


async def _registry_error(request: Request, error: RegistryError) -> Response:
    return render(error, request)


async def _http_error(request: Request, error: HTTPException) -> Response:
    # Routing failures from the framework: unknown path or method.
    if error.status_code == 405:
        return render(Unsupported({"method": request.method}, message="method not allowed"))
    return render(NotFound({"path": request.url.path[:200]}))


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    return render(NotFound({"path": request.url.path[:200]}))


async def _storage_unavailable(request: Request, error: StorageUnavailable) -> Response:
    logger.warning("storage unavailable: %s", error)
    return render(Unavailable())


async def _client_gone(request: Request, error: ClientDisconnect) -> Response:
    # The client hung up mid-body: nobody reads this answer, and the upload's error
    # path has already undone what the request wrote. Not a server fault.
    logger.info("client disconnected on %s %s", request.method, request.url.path)
    return render(BlobUploadInvalid(message="the client disconnected before the body was complete"))


async def _unexpected(request: Request, error: Exception) -> Response:
    # Logged with its traceback for the operator; the client sees no internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return render(Unknown())


def install(app: FastAPI) -> None:
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
