"""`GET /v2/`: the API version check (distribution-spec "Determining support")."""

from fastapi import APIRouter
from starlette.responses import Response

router = APIRouter()


@router.get("/v2/")
@router.get("/v2")
def version_check() -> Response:
    return Response(content=b"{}", media_type="application/json")
