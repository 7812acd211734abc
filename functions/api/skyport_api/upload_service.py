"""The upload service: the upload routes on a long-running server, beside the Lambda API.

Behind API Gateway and Lambda a request carries about 4.5 MiB, and docker, podman,
skopeo and containerd send a whole layer in one request. When the deployment has an
upload endpoint (SKYPORT_UPLOAD_ENDPOINT), ``POST /v2/<name>/blobs/uploads/`` (still
the Lambda API, with its auth) answers a ``Location`` on this service's host, and the
client sends the bytes here: the same routes (routes/uploads.py), the same core, as a
streaming server (uvicorn; no body limit).

Clients do not send the registry's ``Authorization`` to another host, so requests here
are authorized by the upload's capability (skyport.auth.capabilities) in the
``_capability`` query parameter; any ``Authorization`` header is ignored. A refusal is
401 UNAUTHORIZED without a Bearer challenge: a token from the registry's realm is of no
use here. Served: PATCH, PUT, GET and DELETE on ``/v2/<name>/blobs/uploads/<id>`` and
``GET /healthz`` (the load balancer's health check); every other path is 404.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from skyport.auth.capabilities import QUERY_PARAMETER
from skyport.concurrency import run_blocking
from skyport.reference import validate_name
from skyport.registry import Registry
from starlette.responses import Response

from . import errors
from .app import ApiVersionHeader
from .routes import Routes, inline, registry_of, uploads

HEALTH_PATH = "/healthz"

# What the upload service calls in AWS, for its ECS task role (template.yaml grants these
# and nothing else; tests/api/test_upload_service.py checks every call it makes is here).
# As IAM actions: s3:PutObject (PutObject, CreateMultipartUpload, UploadPart,
# UploadPartCopy, CompleteMultipartUpload, CopyObject's target), s3:GetObject (GetObject:
# a digest other than sha256 is verified by reading; CopyObject's and UploadPartCopy's
# source), s3:DeleteObject, s3:AbortMultipartUpload, on S3_PREFIXES only; and
# dynamodb:GetItem, PutItem, UpdateItem, DeleteItem on the table. Never TransactWriteItems
# or Query (starting an upload is the API's), never Secrets Manager: the capability key
# comes from the task's environment (ECS reads the secret with the execution role).
AWS_CALLS = {
    "s3": (
        "PutObject",
        "GetObject",
        "CopyObject",
        "DeleteObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    ),
    "dynamodb": ("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
}
S3_PREFIXES = ("blobs/", "uploads/")  # storage/keys.py: blob objects and upload tails
# The items it reads and writes, by partition key kind (storage/keys.py): upload sessions
# and their quota, the blob and the repository's link to it.
DYNAMODB_ITEMS = ("UPLOAD", "OPEN_UPLOADS", "BLOB", "REPO")


class CapabilityAccess:
    """``request.state.access`` on the upload service: the upload session's owner as the
    capability names it (routes.owner_of), and nothing else allowed."""

    __slots__ = ("subject",)

    def __init__(self, subject: str) -> None:
        self.subject = subject

    def allows(self, *_: str) -> bool:
        return False


async def authorize_capability(request: Request) -> None:
    """Runs before every upload route: the capability must be for this repository's
    upload (its MAC binds both) and unexpired, else 401 with nothing stored. Sets the
    owner the session is used as, and the capability the answers' Locations keep."""
    name = request.path_params.get("name", "")
    # An invalid name is NAME_INVALID, as on the registry API, before anything else.
    validate_name(name)
    capability = request.query_params.get(QUERY_PARAMETER)
    registry = registry_of(request)
    # The key may come from Secrets Manager (cached): off the event loop.
    grant = await run_blocking(
        registry.capabilities.verify,
        capability,
        name,
        request.path_params.get("upload_id", ""),
        inline=inline(request),
    )
    if grant.owner is not None:
        request.state.access = CapabilityAccess(grant.owner)
    request.state.capability = capability


routes = Routes()


@routes.get(HEALTH_PATH)
async def health(request: Request) -> Response:
    """The load balancer's health check: the process serves. Storage is not called: an
    S3 or DynamoDB hiccup must not take every task out of the target group at once."""
    return Response(content=b"{}", media_type="application/json")


def create_upload_app(registry: Registry) -> FastAPI:
    """The upload service's ASGI app for ``registry`` (settings with no request body
    limit: ``max_request_body`` 0)."""
    app = FastAPI(
        title="Skyport upload service",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.state.registry = registry
    app.state.one_request_at_a_time = False
    errors.install(app)
    for method, path, endpoint in routes:
        app.add_api_route(path, endpoint, methods=[method])
    for method, path, endpoint in uploads.routes:
        if path == uploads.UPLOAD:  # the session's routes; never POST (the registry API starts uploads)
            app.add_api_route(path, endpoint, methods=[method], dependencies=[Depends(authorize_capability)])
    app.add_middleware(ApiVersionHeader)
    return app
