"""The FastAPI application: routes per OCI concept, one error handler."""

from __future__ import annotations

from fastapi import FastAPI
from skyport.registry import Registry

from . import errors
from .routes import base, blobs, catalog, manifests, referrers, tags, uploads

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


class _ApiVersionHeader:
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


def create_app(registry: Registry) -> FastAPI:
    app = FastAPI(
        title="Skyport", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False,
    )
    app.state.registry = registry
    errors.install(app)
    # Order matters: {name:path} is greedy, so the specific suffixes come
    # before the generic blob route.
    for module in (base, catalog, tags, referrers, manifests, uploads, blobs):
        app.include_router(module.router)
    app.add_middleware(_ApiVersionHeader)
    return app
