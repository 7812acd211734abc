"""The FastAPI application: routes per OCI concept, one error handler."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from skyport.registry import Registry

from . import auth, errors
from .routes import (
    base,
    blobs,
    catalog,
    direct_uploads,
    manifests,
    referrers,
    scanning,
    tags,
    uploads,
    usage,
)

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


class ApiVersionHeader:
    """Adds Docker-Distribution-API-Version to every response, as Distribution does
    (docker checks it on /v2/). A bare ASGI wrapper: cheaper than HTTP middleware."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), API_VERSION_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(registry: Registry, *, one_request_at_a_time: bool = False) -> FastAPI:
    """``one_request_at_a_time``: the process serves one request at a time (Lambda), so
    the routes run their blocking calls inline (routes.inline, skyport.concurrency)."""
    # Auth on: every registry route first passes the authorizer (auth.py); off, no
    # dependency at all, so the open registry pays nothing for it.
    dependencies = [Depends(auth.authorize)] if registry.settings.auth_enabled else []
    app = FastAPI(
        title="Skyport",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        dependencies=dependencies,
    )
    app.state.registry = registry
    app.state.one_request_at_a_time = one_request_at_a_time
    errors.install(app)
    # Order matters: {name:path} is greedy, so the specific suffixes come
    # before the generic blob route.
    concepts = [base, catalog, tags, referrers, manifests, uploads, blobs]
    concepts.append(direct_uploads)  # the `skyport push` extension (/v2/<name>/_skyport/uploads)
    concepts.append(usage)  # the usage extension (/v2/_skyport/usage, /v2/<name>/_skyport/usage)
    concepts.append(scanning)  # the scan extension (/v2/<name>/_skyport/scan|sbom/<reference>)
    if registry.settings.auth_enabled:
        concepts.append(auth)  # the token endpoint (the authorizer lets it through)
    for concept in concepts:
        for method, path, endpoint in concept.routes:
            app.add_api_route(path, endpoint, methods=[method])
    app.add_middleware(ApiVersionHeader)
    return app
