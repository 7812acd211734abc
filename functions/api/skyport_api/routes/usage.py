"""The usage extension (skyport.usage): what repositories store, for a future UI.

    GET /v2/_skyport/usage?n=&last=     200 {"repositories": [...], "total": {...}}
                                        paged like the catalog (Link: rel="next"); only
                                        repositories the caller may pull (auth on); the
                                        total is over the repositories of the page, a blob
                                        shared by several counted once
    GET /v2/_skyport/usage/total        200 {"total": {...}, "complete": bool}: the total
                                        over every repository the caller may pull, a blob
                                        shared by several counted once; measured for at
                                        most TOTAL_SECONDS (API Gateway waits 30 s), past
                                        which it is a lower bound ("complete": false; the
                                        CLI's `skyport usage` has no such limit)
    GET /v2/<name>/_skyport/usage       200 the repository's figures; NAME_UNKNOWN when the
                                        catalog does not list it

distribution-spec, extensions/README.md: registry-level extensions under
``/v2/_<extension>/...``, repository-level ones under ``/v2/<name>/_<extension>/...``; no
repository name component can start with ``_``, so neither shadows a repository.
"""

import json
import time

from fastapi import Request
from skyport.concurrency import run_blocking
from skyport.pagination import next_link, page_size
from skyport.usage import MAX_PAGE
from starlette.responses import Response

from . import Routes, access_of, inline, registry_of

routes = Routes()
REGISTRY_USAGE = "/v2/_skyport/usage"
REPOSITORY_USAGE = "/v2/{name:path}/_skyport/usage"
TOTAL_USAGE = "/v2/_skyport/usage/total"
TOTAL_SECONDS = 20


def _json(document: dict) -> Response:
    return Response(content=json.dumps(document).encode(), media_type="application/json")


@routes.get(REGISTRY_USAGE)
async def registry_usage(request: Request) -> Response:
    registry = registry_of(request)
    limit = min(page_size(request.query_params.get("n"), registry.settings.default_page_size), MAX_PAGE)
    # Only what the caller may pull (auth on), as the catalog.
    page = await run_blocking(
        registry.usage.page,
        limit,
        request.query_params.get("last"),
        access_of(request),
        inline=inline(request),
    )
    response = _json(
        {"repositories": [usage.fields() for usage in page.repositories], "total": page.total.fields()}
    )
    if page.next_after is not None:
        response.headers["Link"] = next_link(REGISTRY_USAGE, limit, page.next_after)
    return response


@routes.get(TOTAL_USAGE)
async def total_usage(request: Request) -> Response:
    registry = registry_of(request)
    total, complete = await run_blocking(
        registry.usage.total, access_of(request), time.time() + TOTAL_SECONDS, inline=inline(request)
    )
    return _json({"total": total.fields(), "complete": complete})


@routes.get(REPOSITORY_USAGE)
async def repository_usage(request: Request, name: str) -> Response:
    registry = registry_of(request)
    usage = await run_blocking(registry.usage.of, name, inline=inline(request))
    return _json(usage.fields())
