"""GET /v2/ (distribution-spec "Determining support"), unknown routes and methods."""

import pytest
from oci import assert_error


@pytest.mark.parametrize("path", ["/v2/", "/v2"])
def test_version_check(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}


def test_version_header_is_on_errors_too(client):
    response = client.get("/v2/team/app/manifests/latest")
    assert_error(response, 404, "MANIFEST_UNKNOWN")
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize("path", ["/", "/nope", "/v1/", "/v2/team/app/whatever/x", "/v2/team/app/blobs"])
def test_unknown_route_is_json_404(client, path):
    assert_error(client.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/"),
        ("DELETE", "/v2/"),
        ("POST", "/v2/team/app/manifests/latest"),
        ("PATCH", "/v2/team/app/manifests/latest"),
        ("POST", "/v2/team/app/tags/list"),
        ("PUT", "/v2/_catalog"),
        ("POST", "/v2/team/app/blobs/sha256:" + "a" * 64),
        ("GET", "/v2/team/app/blobs/uploads/"),
    ],
)
def test_wrong_method_is_json_405(client, method, path):
    assert_error(client.request(method, path), 405, "UNSUPPORTED")
