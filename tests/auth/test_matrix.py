"""Every registry endpoint x every kind of caller: allowed, or refused as the spec says.

Callers: anonymous, a reader of team-a/* (through a group), a pusher of team-a/*
(a robot), a pusher of team-b/*, an admin. Repositories: team-a/app (private)
and pub/app (public: anyone may pull). Each caller comes with a token from the
token endpoint (asking for pull,push,delete: it gets what it may) and, on
team-a/app, with Basic credentials sent directly.

Refusals: an anonymous caller hears 401 UNAUTHORIZED with a Bearer challenge
naming the scope; an authenticated one that may never do it hears 403 DENIED.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from oci import (
    EMPTY_BLOB_SHA256,
    assert_error,
    make_artifact,
    make_image,
    push_blob,
    push_image,
    sha256,
)
from skyport.registry import Registry
from skyport_api.app import create_app
from starlette.testclient import TestClient

from .conftest import PUBLIC, REPO_A, REPO_B, Caller, bearer, make_auth_settings, populate

ALLOWED = {
    (REPO_A, "pull"): {"reader_a", "pusher_a", "admin"},
    (REPO_A, "push"): {"pusher_a", "admin"},
    (REPO_A, "delete"): {"admin"},
    (PUBLIC, "pull"): {"anonymous", "reader_a", "pusher_a", "pusher_b", "admin"},
    (PUBLIC, "push"): {"admin"},
    (PUBLIC, "delete"): {"admin"},
}


@dataclass
class World:
    registry: Registry
    client: TestClient
    callers: dict[str, Caller]
    images: dict[str, object]
    tokens: dict[tuple[str, str], str]

    @property
    def admin(self) -> dict[str, str]:
        return self.callers["admin"].credentials()

    def token(self, caller: Caller, repo: str) -> str:
        key = (caller.name, repo)
        if key not in self.tokens:
            response = self.client.get(
                "/auth/token",
                params={"service": "skyport", "scope": f"repository:{repo}:pull,push,delete"},
                headers=caller.credentials(),
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["expires_in"] >= 60
            self.tokens[key] = body["token"]
        return self.tokens[key]


@pytest.fixture(scope="module")
def world(moto_endpoint, aws_clients, template) -> Iterator[World]:
    registry = Registry(make_auth_settings(moto_endpoint, aws_clients, template), clients=aws_clients)
    callers = populate(registry)
    with TestClient(create_app(registry), follow_redirects=False) as client:
        admin = callers["admin"].credentials()
        images = {}
        for repo in (REPO_A, REPO_B, PUBLIC):
            image = make_image((512,))
            push_image(_Authed(client, admin), repo, image, "v1")
            images[repo] = image
            subject = image.manifest
            artifact = make_artifact(subject)
            push_image(_Authed(client, admin), repo, artifact)
        yield World(registry, client, callers, images, {})


class _Authed:
    """A TestClient that adds headers to every request (for the oci.py helpers)."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self._client, self._headers = client, headers

    def __getattr__(self, method: str) -> Callable:
        def call(url, **kwargs):
            kwargs["headers"] = {**self._headers, **kwargs.get("headers", {})}
            return getattr(self._client, method)(url, **kwargs)

        return call


# --- the endpoints ------------------------------------------------------------------------
# Each takes (world, repo, headers of the caller, may the caller push here) and returns
# the caller's response; setup uses the admin.


def _session(w: World, repo: str, headers: dict, caller_pushes: bool) -> str:
    """An upload session: the caller's own when it may push, else the admin's."""
    owner = headers if caller_pushes else w.admin
    response = w.client.post(f"/v2/{repo}/blobs/uploads/", headers=owner)
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def _fresh_manifest(w: World, repo: str) -> str:
    image = make_image((64,))
    return push_image(_Authed(w.client, w.admin), repo, image)


def _fresh_blob(w: World, repo: str) -> str:
    return push_blob(_Authed(w.client, w.admin), repo, os.urandom(64), mode="post")


def put_manifest(w: World, repo: str, h: dict, pushes: bool):
    image = w.images[repo]
    return w.client.put(
        f"/v2/{repo}/manifests/t-{uuid.uuid4().hex[:8]}",
        content=image.manifest,
        headers={**h, "Content-Type": image.media_type},
    )


ENDPOINTS: dict[str, tuple[str, int, Callable]] = {
    # name: (action, status when allowed, request)
    "GET manifest by tag": (
        "pull",
        200,
        lambda w, r, h, p: w.client.get(f"/v2/{r}/manifests/v1", headers=h),
    ),
    "HEAD manifest": (
        "pull",
        200,
        lambda w, r, h, p: w.client.head(f"/v2/{r}/manifests/v1", headers=h),
    ),
    "GET manifest by digest": (
        "pull",
        200,
        lambda w, r, h, p: w.client.get(f"/v2/{r}/manifests/{w.images[r].digest}", headers=h),
    ),
    "PUT manifest": ("push", 201, put_manifest),
    "DELETE manifest": (
        "delete",
        202,
        lambda w, r, h, p: w.client.delete(f"/v2/{r}/manifests/{_fresh_manifest(w, r)}", headers=h),
    ),
    "GET blob": (
        "pull",
        307,
        lambda w, r, h, p: w.client.get(f"/v2/{r}/blobs/{sha256(w.images[r].config)}", headers=h),
    ),
    "HEAD blob": (
        "pull",
        200,
        lambda w, r, h, p: w.client.head(f"/v2/{r}/blobs/{sha256(w.images[r].config)}", headers=h),
    ),
    "DELETE blob": (
        "delete",
        202,
        lambda w, r, h, p: w.client.delete(f"/v2/{r}/blobs/{_fresh_blob(w, r)}", headers=h),
    ),
    "POST upload": (
        "push",
        202,
        lambda w, r, h, p: w.client.post(f"/v2/{r}/blobs/uploads/", headers=h),
    ),
    "POST monolithic upload": (
        "push",
        201,
        lambda w, r, h, p: w.client.post(f"/v2/{r}/blobs/uploads/?digest={EMPTY_BLOB_SHA256}", headers=h),
    ),
    "POST mount": (
        "push",
        201,
        lambda w, r, h, p: w.client.post(
            f"/v2/{r}/blobs/uploads/?mount={sha256(w.images[r].config)}&from={r}", headers=h
        ),
    ),
    "PATCH upload": (
        "push",
        202,
        lambda w, r, h, p: w.client.patch(_session(w, r, h, p), content=b"abc", headers=h),
    ),
    "PUT upload": (
        "push",
        201,
        lambda w, r, h, p: w.client.put(f"{_session(w, r, h, p)}?digest={EMPTY_BLOB_SHA256}", headers=h),
    ),
    "GET upload": ("push", 204, lambda w, r, h, p: w.client.get(_session(w, r, h, p), headers=h)),
    "DELETE upload": (
        "push",
        204,
        lambda w, r, h, p: w.client.delete(_session(w, r, h, p), headers=h),
    ),
    "GET tags": ("pull", 200, lambda w, r, h, p: w.client.get(f"/v2/{r}/tags/list", headers=h)),
    "GET referrers": (
        "pull",
        200,
        lambda w, r, h, p: w.client.get(f"/v2/{r}/referrers/{w.images[r].digest}", headers=h),
    ),
}

CALLERS = ["anonymous", "reader_a", "pusher_a", "pusher_b", "admin"]
CASES = [
    pytest.param(endpoint, caller, repo, mode, id=f"{endpoint}-{caller}-{repo}-{mode}")
    for endpoint, caller, (repo, mode) in itertools.product(
        ENDPOINTS, CALLERS, [(REPO_A, "token"), (REPO_A, "basic"), (PUBLIC, "token")]
    )
    if not (caller == "anonymous" and mode == "basic")
] + [
    # Anonymous callers with no token at all (curl): public pulls work, the rest is 401.
    pytest.param(endpoint, "anonymous", repo, "none", id=f"{endpoint}-anonymous-{repo}-none")
    for endpoint in ENDPOINTS
    for repo in (REPO_A, PUBLIC)
]


@pytest.mark.parametrize(("endpoint", "caller_name", "repo", "mode"), CASES)
def test_endpoint_allows_or_denies(world: World, endpoint: str, caller_name: str, repo: str, mode: str):
    action, ok_status, request = ENDPOINTS[endpoint]
    caller = world.callers[caller_name]
    if mode == "token":
        headers = bearer(world.token(caller, repo))
    else:
        headers = caller.credentials()
    pushes = caller_name in ALLOWED[(repo, "push")]
    response = request(world, repo, headers, pushes)
    if caller_name in ALLOWED[(repo, action)]:
        assert response.status_code == ok_status, (response.status_code, response.text)
        return
    if caller.username is None:
        assert_error(response, 401, "UNAUTHORIZED")
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="http://testserver/auth/token",service="skyport"')
        assert f'scope="repository:{repo}:' in challenge
    else:
        assert_error(response, 403, "DENIED")


def test_version_check_needs_credentials(world: World):
    response = world.client.get("/v2/")
    assert_error(response, 401, "UNAUTHORIZED")
    assert (
        response.headers["WWW-Authenticate"]
        == 'Bearer realm="http://testserver/auth/token",service="skyport"'
    )
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    for name in CALLERS[1:]:
        caller = world.callers[name]
        assert world.client.get("/v2/", headers=caller.credentials()).status_code == 200
        assert world.client.get("/v2/", headers=bearer(world.token(caller, REPO_A))).status_code == 200
    # An anonymous token is a valid token: /v2/ answers (what it may pull is another matter).
    assert (
        world.client.get("/v2/", headers=bearer(world.token(world.callers["anonymous"], PUBLIC))).status_code
        == 200
    )


# --- leaks --------------------------------------------------------------------------------


def _catalog(world: World, headers: dict, **params) -> tuple[list[str], str | None]:
    response = world.client.get("/v2/_catalog", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["repositories"], response.headers.get("Link")


@pytest.mark.parametrize(
    ("caller_name", "visible"),
    [
        ("anonymous", [PUBLIC]),
        ("reader_a", [PUBLIC, REPO_A]),
        ("pusher_a", [PUBLIC, REPO_A]),
        ("pusher_b", [PUBLIC, REPO_B]),
        ("admin", [PUBLIC, REPO_A, REPO_B]),
    ],
)
def test_catalog_lists_only_what_the_caller_may_pull(world: World, caller_name: str, visible: list[str]):
    caller = world.callers[caller_name]
    names, _ = _catalog(world, caller.credentials())
    assert [n for n in names if n in (PUBLIC, REPO_A, REPO_B)] == sorted(visible)
    # With a token for registry:catalog:* (what clients ask for): the same list.
    response = world.client.get(
        "/auth/token", params={"scope": "registry:catalog:*"}, headers=caller.credentials()
    )
    names, _ = _catalog(world, bearer(response.json()["token"]))
    assert [n for n in names if n in (PUBLIC, REPO_A, REPO_B)] == sorted(visible)
    # Page by page (n=1): the hidden names show up neither in pages nor in Link headers.
    seen, last = [], None
    for _ in range(20):
        names, link = _catalog(world, caller.credentials(), n=1, **({"last": last} if last else {}))
        seen += names
        if not link:
            break
        assert all(hidden not in link for hidden in {PUBLIC, REPO_A, REPO_B} - set(visible))
        last = names[-1]
    assert [n for n in seen if n in (PUBLIC, REPO_A, REPO_B)] == sorted(visible)


def test_catalog_token_without_catalog_scope_is_challenged(world: World):
    token = world.token(world.callers["reader_a"], REPO_A)
    response = world.client.get("/v2/_catalog", headers=bearer(token))
    assert_error(response, 401, "UNAUTHORIZED")
    assert 'scope="registry:catalog:*"' in response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_token_for_one_repository_is_challenged_on_another(world: World):
    """The client asked for repo A only; repo B it could get: 401 with B's scope, so it
    fetches a token for B and retries (what docker does between repositories)."""
    admin = world.callers["admin"]
    token = world.token(admin, REPO_A)
    response = world.client.get(f"/v2/{REPO_B}/manifests/v1", headers=bearer(token))
    assert_error(response, 401, "UNAUTHORIZED")
    challenge = response.headers["WWW-Authenticate"]
    assert f'scope="repository:{REPO_B}:pull"' in challenge and 'error="insufficient_scope"' in challenge


def test_mount_from_a_repository_the_caller_cannot_read_uploads_instead(world: World):
    secret_blob = _fresh_blob(world, REPO_A)
    bob = world.callers["pusher_b"]
    for headers in (
        bob.credentials(),
        bearer(_token(world, bob, f"repository:{REPO_B}:pull,push repository:{REPO_A}:pull")),
    ):
        response = world.client.post(
            f"/v2/{REPO_B}/blobs/uploads/?mount={secret_blob}&from={REPO_A}", headers=headers
        )
        assert response.status_code == 202, response.text  # a plain upload session, no blob
        # Without `from` either: the blob is in the registry, but not anywhere bob may read.
        response = world.client.post(f"/v2/{REPO_B}/blobs/uploads/?mount={secret_blob}", headers=headers)
        assert response.status_code == 202, response.text
        assert world.client.head(f"/v2/{REPO_B}/blobs/{secret_blob}", headers=headers).status_code == 404
    # Who may read the source mounts: with `from`, or without when it may read everything.
    pusher_a = world.callers["pusher_a"]
    response = world.client.post(
        f"/v2/{REPO_A}-copy/blobs/uploads/?mount={secret_blob}&from={REPO_A}",
        headers=pusher_a.credentials(),
    )
    assert response.status_code == 201, response.text
    response = world.client.post(f"/v2/{REPO_B}/blobs/uploads/?mount={secret_blob}", headers=world.admin)
    assert response.status_code == 201, response.text


def test_mount_from_a_public_repository_works(world: World):
    blob = sha256(world.images[PUBLIC].config)
    bob = world.callers["pusher_b"]
    response = world.client.post(
        f"/v2/{REPO_B}/blobs/uploads/?mount={blob}&from={PUBLIC}", headers=bob.credentials()
    )
    assert response.status_code == 201, response.text


def _token(world: World, caller: Caller, scopes: str) -> str:
    response = world.client.get(
        "/auth/token", params=[("scope", s) for s in scopes.split()], headers=caller.credentials()
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_upload_sessions_belong_to_who_started_them(world: World):
    """Another identity allowed to push to the same repository cannot see, write, finish
    or cancel the session: to it the session does not exist."""
    pusher_a, admin = world.callers["pusher_a"], world.callers["admin"]
    response = world.client.post(f"/v2/{REPO_A}/blobs/uploads/", headers=pusher_a.credentials())
    assert response.status_code == 202
    location = response.headers["Location"]
    data = b"owned by pusher_a"
    for other in (admin.credentials(), bearer(world.token(admin, REPO_A))):
        assert_error(world.client.get(location, headers=other), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(world.client.patch(location, content=b"evil", headers=other), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(
            world.client.put(f"{location}?digest={sha256(b'evil')}", content=b"evil", headers=other),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        assert_error(world.client.delete(location, headers=other), 404, "BLOB_UPLOAD_UNKNOWN")
    # Untouched: its owner finishes it.
    owner = bearer(world.token(pusher_a, REPO_A))
    response = world.client.patch(location, content=data, headers=owner)
    assert response.status_code == 202 and response.headers["Range"] == f"0-{len(data) - 1}"
    response = world.client.put(f"{response.headers['Location']}?digest={sha256(data)}", headers=owner)
    assert response.status_code == 201, response.text


def test_an_upload_session_is_unknown_in_another_repository(world: World):
    bob = world.callers["pusher_b"]
    response = world.client.post(f"/v2/{REPO_B}/blobs/uploads/", headers=bob.credentials())
    upload_id = response.headers["Docker-Upload-UUID"]
    # Even an admin, who may push everywhere, cannot carry bob's session over to another repo.
    response = world.client.get(f"/v2/{REPO_A}/blobs/uploads/{upload_id}", headers=world.admin)
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_referrers_and_tags_do_not_cross_repositories(world: World):
    bob = world.callers["pusher_b"]
    subject = world.images[REPO_A].digest
    assert_error(
        world.client.get(f"/v2/{REPO_A}/referrers/{subject}", headers=bob.credentials()),
        403,
        "DENIED",
    )
    # The same subject digest asked in bob's own repository: nothing from team-a.
    response = world.client.get(f"/v2/{REPO_B}/referrers/{subject}", headers=bob.credentials())
    assert response.status_code == 200 and response.json()["manifests"] == []
    assert_error(world.client.get(f"/v2/{REPO_A}/tags/list", headers=bob.credentials()), 403, "DENIED")
    # Refused before anything is looked up: an unknown repository answers like a known one.
    for repo in (REPO_A, "team-a/does-not-exist"):
        assert_error(world.client.get(f"/v2/{repo}/tags/list", headers=bob.credentials()), 403, "DENIED")
        assert_error(world.client.get(f"/v2/{repo}/tags/list"), 401, "UNAUTHORIZED")


def test_refused_writes_change_nothing(world: World):
    bob = world.callers["pusher_b"]
    image = world.images[REPO_A]
    response = world.client.put(
        f"/v2/{REPO_A}/manifests/bob-was-here",
        content=image.manifest,
        headers={**bob.credentials(), "Content-Type": image.media_type},
    )
    assert_error(response, 403, "DENIED")
    assert world.client.get(f"/v2/{REPO_A}/manifests/bob-was-here", headers=world.admin).status_code == 404
    response = world.client.delete(
        f"/v2/{REPO_A}/manifests/{image.digest}", headers=world.callers["pusher_a"].credentials()
    )
    assert_error(response, 403, "DENIED")
    assert world.client.get(f"/v2/{REPO_A}/manifests/{image.digest}", headers=world.admin).status_code == 200
