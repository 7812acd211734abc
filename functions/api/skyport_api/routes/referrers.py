"""`GET /v2/<name>/referrers/<digest>` (distribution-spec 1.1 "Listing Referrers")."""

import json

from fastapi import Request
from skyport.media_types import OCI_INDEX
from starlette.responses import Response

from . import Routes, registry_of

routes = Routes()


@routes.get("/v2/{name:path}/referrers/{digest}")
def list_referrers(request: Request, name: str, digest: str) -> Response:
    artifact_type = request.query_params.get("artifactType")
    referrers = registry_of(request).referrers.list(name, digest, artifact_type)
    response = Response(content=json.dumps(referrers.index).encode(), media_type=OCI_INDEX)
    if referrers.filtered:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response
