"""`GET /v2/<name>/tags/list` with `n`/`last` pagination."""

import json

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.pagination import next_link, page_size
from starlette.responses import Response

from . import Routes, inline, registry_of

routes = Routes()


@routes.get("/v2/{name:path}/tags/list")
async def list_tags(request: Request, name: str) -> Response:
    registry = registry_of(request)
    limit = page_size(request.query_params.get("n"), registry.settings.default_page_size)
    page = await run_blocking(
        registry.tags.list, name, limit, request.query_params.get("last"), inline=inline(request)
    )
    response = Response(
        content=json.dumps({"name": name, "tags": page.items}).encode(), media_type="application/json"
    )
    if page.has_more:
        response.headers["Link"] = next_link(f"/v2/{name}/tags/list", limit, page.items[-1])
    return response
