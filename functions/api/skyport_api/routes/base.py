"""`GET /v2/`: the API version check (distribution-spec "Determining support")."""

from starlette.requests import Request
from starlette.responses import Response

from . import Routes

routes = Routes()


@routes.get("/v2/")
@routes.get("/v2")
async def version_check(request: Request) -> Response:
    return Response(content=b"{}", media_type="application/json")
