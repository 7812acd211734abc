"""Token auth for the HTTP API (docs/auth.md): the Docker token endpoint, and one
dependency that authorizes every registry route before it runs.

Installed by ``create_app`` only when ``SKYPORT_AUTH=on``; the routes themselves
know nothing of it beyond ``routes.access_of`` (the catalog filter, the mount
source check and the upload owner). Decisions come from the core
(``skyport.auth``); this module maps each route to the scope it needs and speaks
the protocol:

- no credentials, or a token lacking the scope the identity could get:
  ``401 UNAUTHORIZED`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``
  (the client fetches a token for that scope and retries);
- credentials that can never do it: ``403 DENIED``;
- bad credentials or a bad token: ``401 UNAUTHORIZED``.

The auth service's calls block (storage, the key source, scrypt): they run as
``skyport.concurrency`` says, like every route's storage call.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from skyport.auth import policy as access
from skyport.auth.policy import ANONYMOUS, Identity, TokenAccess, parse_scopes
from skyport.concurrency import run_blocking
from skyport.errors import Denied, RegistryError, Unauthorized, Unsupported
from skyport.reference import validate_name
from skyport.registry import Registry
from starlette.responses import Response

from .errors import Challenge
from .routes import Routes, blobs, direct_uploads, inline, manifests, registry_of, scanning, uploads, usage

TOKEN_PATH = "/auth/token"
MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Requirement:
    type: str  # "base" (any caller who has authenticated), registry, repository
    action: str = ""


BASE = Requirement("base")
CATALOG = Requirement(access.REGISTRY, access.ALL)
PULL = Requirement(access.REPOSITORY, access.PULL)
PUSH = Requirement(access.REPOSITORY, access.PUSH)
DELETE = Requirement(access.REPOSITORY, access.DELETE)

# (method, route path) -> what it needs. HEAD needs what GET needs. A route missing
# here is refused to everyone but admins (tests/auth checks none is missing).
REQUIREMENTS: dict[tuple[str, str], Requirement] = {
    ("GET", "/v2/"): BASE,
    ("GET", "/v2"): BASE,
    ("GET", "/v2/_catalog"): CATALOG,
    ("GET", "/v2/{name:path}/tags/list"): PULL,
    ("GET", "/v2/{name:path}/referrers/{digest}"): PULL,
    ("GET", manifests.PATH): PULL,
    ("PUT", manifests.PATH): PUSH,
    ("DELETE", manifests.PATH): DELETE,
    ("GET", blobs.PATH): PULL,
    ("DELETE", blobs.PATH): DELETE,
    ("POST", uploads.UPLOADS): PUSH,
    ("POST", uploads.UPLOADS.rstrip("/")): PUSH,
    # Every use of an upload session needs push, and the session must be the caller's
    # own (the upload service checks the owner).
    ("PATCH", uploads.UPLOAD): PUSH,
    ("PUT", uploads.UPLOAD): PUSH,
    ("GET", uploads.UPLOAD): PUSH,
    ("DELETE", uploads.UPLOAD): PUSH,
    # The direct-upload extension (skyport push): push, and the session is the caller's own.
    ("POST", direct_uploads.UPLOADS): PUSH,
    ("POST", direct_uploads.PARTS): PUSH,
    ("GET", direct_uploads.UPLOAD): PUSH,
    ("POST", direct_uploads.COMPLETE): PUSH,
    ("DELETE", direct_uploads.UPLOAD): PUSH,
    # The usage extension (issue 12): the registry-level listing as the catalog (it shows
    # only what the caller may pull), one repository's figures to those who may pull it.
    ("GET", usage.REGISTRY_USAGE): CATALOG,
    ("GET", usage.TOTAL_USAGE): CATALOG,
    ("GET", usage.REPOSITORY_USAGE): PULL,
    # The scan extension (issue 14): what the scans of an image found, to those who may pull it.
    ("GET", scanning.SCAN): PULL,
    ("GET", scanning.SBOM): PULL,
}


def requirement_of(method: str, path: str) -> Requirement | None:
    return REQUIREMENTS.get(("GET" if method == "HEAD" else method, path))


# --- challenges -----------------------------------------------------------------------

_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


def _realm(request: Request, registry: Registry) -> str:
    if registry.settings.token_realm:
        return registry.settings.token_realm
    host = request.headers.get("host", "")
    if not _HOST.fullmatch(host):
        host = request.url.netloc if _HOST.fullmatch(request.url.netloc) else "localhost"
    scheme = "https" if request.url.scheme == "https" else "http"
    return f"{scheme}://{host}{TOKEN_PATH}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTE = re.compile(r'(["\\])')


def _quoted(value: str) -> str:
    """An RFC 9110 section 5.6.4 quoted-string. Names are validated before they enter a
    scope; this keeps the header well formed whatever a value holds: quotes and backslashes
    are escaped, control characters (CR, LF: header splitting) dropped."""
    return '"' + _QUOTE.sub(r"\\\1", _CONTROL.sub("", value)) + '"'


def _challenge(
    request: Request, registry: Registry, scope: str | None = None, error: str | None = None
) -> str:
    parts = [
        f"realm={_quoted(_realm(request, registry))}",
        f"service={_quoted(registry.settings.token_service)}",
    ]
    if scope:
        parts.append(f"scope={_quoted(scope)}")
    if error:
        parts.append(f"error={_quoted(error)}")
    return "Bearer " + ",".join(parts)


def _unauthorized(
    request: Request,
    registry: Registry,
    scope: str | None = None,
    error: str | None = None,
    detail: Any = None,
    message: str | None = None,
) -> Unauthorized:
    return Challenge(
        detail,
        message=message,
        challenge=_challenge(request, registry, scope, error),
    )


# --- credentials ----------------------------------------------------------------------


def _basic(value: str) -> tuple[str, str] | None:
    """(username, password) from a Basic credential, or None when malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def _credentials(request: Request) -> tuple[str, str]:
    """(scheme, credentials) of the Authorization header; ("", "") when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower(), value.strip()


def _source(request: Request) -> str:
    """The caller's address, for lockouts: the socket peer locally, API Gateway's
    requestContext.http.sourceIp behind Mangum. Never X-Forwarded-For: the client
    writes that."""
    return request.client.host if request.client else ""


async def _authenticate_basic(request: Request, registry: Registry, value: str) -> Identity:
    pair = _basic(value)
    if pair is None:
        raise Unauthorized(message="malformed Basic credentials")
    return await run_blocking(registry.auth.authenticate, *pair, _source(request), inline=inline(request))


def _mount_source(request: Request, path: str) -> str:
    """The valid ``from`` of a mount request (POST ?mount=&from=), else ''. An invalid
    one is left to the mount, which falls back to an upload session as the spec says."""
    if request.method != "POST" or path not in (uploads.UPLOADS, uploads.UPLOADS.rstrip("/")):
        return ""
    source = request.query_params.get("from", "")
    if not source or "mount" not in request.query_params:
        return ""
    try:
        return validate_name(source)
    except RegistryError:
        return ""


# --- the dependency -------------------------------------------------------------------


async def authorize(request: Request) -> None:
    """Runs before every registry route (auth on): who is calling, and may they do this?
    Sets ``request.state.access`` for the route (routes.access_of)."""
    registry = registry_of(request)
    path = getattr(request.scope.get("route"), "path", "")
    if path == TOKEN_PATH:
        return  # where credentials are exchanged for tokens: open to all
    needed = requirement_of(request.method, path)
    scheme, value = _credentials(request)
    name = request.path_params.get("name", "")
    if "name" in request.path_params:
        # An invalid name is NAME_INVALID to every caller, as with auth off: checked
        # before it enters a scope or a challenge (distribution-spec, error codes).
        validate_name(name)
    scope = (
        access.challenge_scope(needed.type, name, needed.action) if needed and needed.type != "base" else None
    )
    source = _mount_source(request, path)
    if scope and source:
        # A cross-repository mount also needs pull on the source: the challenge asks
        # for both, as Distribution does, or the client's token lacks it and the mount
        # degrades to an upload (distribution-spec, "Mounting a blob from another
        # repository").
        scope += " " + access.challenge_scope(access.REPOSITORY, source, access.PULL)
    auth = registry.auth

    grant: Any
    if scheme == "bearer":
        try:
            # May load the signing keys (the table, Secrets Manager or SSM): off the loop.
            claims = await run_blocking(auth.verify_access, value, inline=inline(request))
        except Unauthorized as error:
            raise _unauthorized(request, registry, scope, "invalid_token", message=error.message) from None
        grant = TokenAccess(claims)
        identity: Identity | None = None
    elif scheme == "basic":
        try:
            identity = await _authenticate_basic(request, registry, value)
        except Unauthorized as error:
            raise _unauthorized(request, registry, scope, message=error.message) from None
        grant = await run_blocking(auth.policy, identity, inline=inline(request))
    elif needed is not None and needed.type == "base":
        # GET /v2/ without credentials: the challenge that starts every client's login.
        raise _unauthorized(request, registry)
    else:
        identity = ANONYMOUS
        grant = await run_blocking(auth.policy, identity, inline=inline(request))

    if needed is None:
        allowed = False
    elif needed.type == "base":
        allowed = True
    else:
        allowed = grant.allows(needed.type, name or access.CATALOG, needed.action)
    if not allowed:
        raise await _refusal(request, registry, scheme, grant, identity, needed, scope)

    if needed is CATALOG and isinstance(grant, TokenAccess):
        # The token allows the catalog; which names it shows depends on the identity.
        identity = await run_blocking(auth.identity, grant.subject, inline=inline(request))
        grant = await run_blocking(auth.policy, identity, inline=inline(request))
    request.state.access = grant


async def _refusal(
    request: Request,
    registry: Registry,
    scheme: str,
    grant: Any,
    identity: Identity | None,
    needed: Requirement | None,
    scope: str | None,
) -> RegistryError:
    if needed is None:
        return Denied()
    if scheme == "bearer":
        # A token without the scope: worth fetching another if the identity may have it.
        identity = await run_blocking(registry.auth.identity, grant.subject, inline=inline(request))
        policy = await run_blocking(registry.auth.policy, identity, inline=inline(request))
        target = request.path_params.get("name") or access.CATALOG
        if identity.anonymous or policy.allows(needed.type, target, needed.action):
            return _unauthorized(
                request,
                registry,
                scope,
                "insufficient_scope",
                message="authentication required" if identity.anonymous else "the token does not grant this",
            )
        return Denied()
    if scheme == "basic":
        return Denied()
    return _unauthorized(request, registry, scope)


# --- the token endpoint -----------------------------------------------------------------

routes = Routes()


def _token_response(body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _basic_challenged(endpoint):
    """A 401 from the token endpoint names the scheme it takes (RFC 9110 section 11.6.1:
    a 401 carries WWW-Authenticate), Basic, in the registry's token service realm."""

    async def guarded(request: Request, **path_params: str) -> Response:
        try:
            return await endpoint(request, **path_params)
        except Challenge:
            raise
        except Unauthorized as error:
            realm = _quoted(registry_of(request).settings.token_service)
            raise Challenge(error.detail, message=error.message, challenge=f"Basic realm={realm}") from error

    guarded.__name__, guarded.__qualname__ = endpoint.__name__, endpoint.__qualname__
    guarded.__doc__ = endpoint.__doc__
    return guarded


@routes.get(TOKEN_PATH)
@_basic_challenged
async def token(request: Request) -> Response:
    """The Docker token spec's endpoint: Basic credentials or none (anonymous)."""
    registry = registry_of(request)
    scheme, value = _credentials(request)
    identity = ANONYMOUS
    if scheme == "basic":
        identity = await _authenticate_basic(request, registry, value)
    elif scheme:
        raise Unauthorized(message="the token endpoint takes Basic credentials")
    params = request.query_params
    scopes = parse_scopes(params.getlist("scope"))
    offline = params.get("offline_token", "").lower() == "true"
    return _token_response(
        await run_blocking(registry.auth.issue, identity, scopes, offline=offline, inline=inline(request))
    )


@routes.post(TOKEN_PATH)
@_basic_challenged
async def oauth_token(request: Request) -> Response:
    """OAuth2 token requests, as containerd and docker send them: the ``password`` and
    ``refresh_token`` grants, form-encoded."""
    registry = registry_of(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Unsupported(message="token request too large")
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    def field(name: str) -> str:
        return (form.get(name) or [""])[0]

    grant_type = field("grant_type")
    if grant_type == "password":
        identity = await run_blocking(
            registry.auth.authenticate,
            field("username"),
            field("password"),
            _source(request),
            inline=inline(request),
        )
        offline = field("access_type") == "offline"
    elif grant_type == "refresh_token":
        identity = await run_blocking(registry.auth.refresh, field("refresh_token"), inline=inline(request))
        offline = False
    else:
        raise Unsupported({"grant_type": grant_type[:40]}, message="unsupported grant_type")
    scopes = parse_scopes(form.get("scope", []))
    return _token_response(
        await run_blocking(registry.auth.issue, identity, scopes, offline=offline, inline=inline(request))
    )
