import pytest
from oci import MiB, make_image, push_blob, push_image, sha256


@pytest.mark.asgi_only  # 11 MiB bodies: more than one Lambda request carries
@pytest.mark.big_body_to_api  # a monolithic POST of 11 MiB
def test_round_trip(client, registry):
    data = b"x" * (11 * MiB + 5)
    for mode in ("post", "put", "patch", "chunks"):
        digest = push_blob(client, "team/app", data, mode=mode)
        head = client.head(f"/v2/team/app/blobs/{digest}")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    got = client.get(f"/v2/team/app/blobs/{digest}")
    assert got.status_code == 307
    image = make_image()
    digest = push_image(client, "team/app", image, "1.0")
    response = client.get("/v2/team/app/manifests/1.0", headers={"Accept": image.media_type})
    assert response.status_code == 200 and response.content == image.manifest
    assert response.headers["Docker-Content-Digest"] == digest == sha256(image.manifest)
    assert client.get("/v2/team/app/tags/list").json() == {"name": "team/app", "tags": ["1.0"]}
    assert client.get("/v2/_catalog").json() == {"repositories": ["team/app"]}
