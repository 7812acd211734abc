"""`GET /v2/_catalog` with `n`/`last` pagination."""

import json

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.pagination import next_link, page_size
from starlette.responses import Response

from . import Routes, access_of, inline, registry_of

routes = Routes()


@routes.get("/v2/_catalog")
async def list_repositories(request: Request) -> Response:
    registry = registry_of(request)
    limit = page_size(request.query_params.get("n"), registry.settings.default_page_size)
    # Only what the caller may pull (auth on).
    page = await run_blocking(
        registry.catalog.list,
        limit,
        request.query_params.get("last"),
        access_of(request),
        inline=inline(request),
    )
    response = Response(
        content=json.dumps({"repositories": page.items}).encode(), media_type="application/json"
    )
    if page.has_more:
        response.headers["Link"] = next_link("/v2/_catalog", limit, page.next_after)
    return response
