"""Whole requests, endpoint by endpoint, from the strategies of strategies.py."""

from __future__ import annotations

from hypothesis import strategies as st

from . import strategies as s
from .properties import Request
from .strategies import World

SIMPLE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def header_text(value: str) -> str:
    """``value`` as an HTTP header can carry it: its UTF-8 bytes, read as Latin-1 (as
    servers decode headers), with no line breaks or NUL (no server passes those on)."""
    return value.encode("utf-8").decode("latin-1").translate({0: None, 10: None, 13: None})


def _optional(draw, strategy, probability_of_none: float = 0.5):
    return None if draw(st.floats(0, 1)) < probability_of_none else draw(strategy)


def _authorization(draw, world: World) -> list[tuple[str, str]]:
    value = draw(s.authorizations(world))
    return [] if value is None else [("Authorization", header_text(value))]


def _query(draw, **params: st.SearchStrategy[str]) -> list[tuple[str, str]]:
    query = []
    for key, strategy in params.items():
        for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):  # absent, once, repeated
            query.append((key, draw(strategy)))
    return query


@st.composite
def base(draw, world: World) -> Request:
    path = draw(st.sampled_from(["/v2/", "/v2"]))
    return Request(draw(st.sampled_from(["GET", "HEAD"])), path, headers=_authorization(draw, world))


@st.composite
def catalog(draw, world: World) -> Request:
    query = _query(draw, n=s.numbers(), last=s.names(world) | s.any_text)
    return Request("GET", "/v2/_catalog", query, _authorization(draw, world))


@st.composite
def tags_list(draw, world: World) -> Request:
    query = _query(draw, n=s.numbers(), last=s.tags(world) | s.nasty_text)
    return Request("GET", f"/v2/{draw(s.names(world))}/tags/list", query, _authorization(draw, world))


@st.composite
def referrers(draw, world: World) -> Request:
    query = _query(draw, artifactType=st.sampled_from(s.MEDIA_TYPES) | s.nasty_text)
    path = f"/v2/{draw(s.names(world))}/referrers/{draw(s.digests(world))}"
    return Request("GET", path, query, _authorization(draw, world))


@st.composite
def manifest(draw, world: World, bodies: list[bytes]) -> Request:
    method = draw(st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]))
    path = f"/v2/{draw(s.names(world))}/manifests/{draw(s.references(world))}"
    headers = _authorization(draw, world)
    headers += [("Accept", header_text(line)) for line in draw(s.accept_lines())]
    request = Request(method, path, headers=headers)
    if method == "PUT":
        content_type = _optional(draw, st.sampled_from(s.MEDIA_TYPES) | s.any_text, 0.2)
        if content_type is not None:
            request.headers.append(("Content-Type", header_text(content_type)))
        request.body = [draw(s.manifest_bodies(world, bodies))]
        request.content_length = draw(
            st.sampled_from(["auto", "auto", "auto", None]) | s.numbers().map(header_text)
        )
    return request


@st.composite
def blob(draw, world: World) -> Request:
    method = draw(st.sampled_from(["GET", "HEAD", "DELETE"]))
    path = f"/v2/{draw(s.names(world))}/blobs/{draw(s.digests(world))}"
    return Request(method, path, headers=_authorization(draw, world))


@st.composite
def start_upload(draw, world: World) -> Request:
    query = _query(draw, digest=s.digests(world), mount=s.digests(world), **{"from": s.names(world)})
    slash = draw(st.sampled_from(["/", ""]))
    request = Request(
        "POST",
        f"/v2/{draw(s.names(world))}/blobs/uploads{slash}",
        query,
        _authorization(draw, world),
        draw(s.chunk_bodies()),
    )
    request.content_length = draw(st.sampled_from(["auto", None]))
    return request


@st.composite
def upload(draw, world: World) -> Request:
    method = draw(st.sampled_from(["PATCH", "PUT", "GET", "DELETE"]))
    path = f"/v2/{draw(s.names(world))}/blobs/uploads/{draw(s.upload_ids(world))}"
    query = _query(draw, digest=s.digests(world)) if method == "PUT" else []
    headers = _authorization(draw, world)
    content_range = _optional(draw, s.content_ranges())
    if content_range is not None:
        headers.append(("Content-Range", header_text(content_range)))
    content_type = _optional(draw, st.sampled_from(["application/octet-stream"]) | s.any_text)
    if content_type is not None:
        headers.append(("Content-Type", header_text(content_type)))
    request = Request(method, path, query, headers)
    if method in ("PATCH", "PUT"):
        request.body = draw(s.chunk_bodies())
        request.content_length = draw(st.sampled_from(["auto", None]))
        if content_range is None and draw(st.booleans()):
            # A range that fits the body, at the world's upload offset or elsewhere.
            start, size = draw(st.sampled_from([0, 100, 101])), len(b"".join(request.body))
            request.headers.append(("Content-Range", f"{start}-{start + size - 1}"))
    return request


@st.composite
def token(draw, world: World) -> Request:
    """The token endpoint (auth on; with auth off it does not exist: a 404)."""
    scopes = st.one_of(
        st.tuples(
            st.sampled_from(["repository", "registry", "repository(plugin)", ""]),
            s.names(world),
            st.sampled_from(["pull", "push", "pull,push,delete", "*", ""]) | s.nasty_text,
        ).map(":".join),
        s.nasty_text,
    )
    headers = _authorization(draw, world)
    if draw(st.booleans()):
        query = _query(
            draw,
            scope=scopes,
            service=st.sampled_from(["skyport"]) | s.nasty_text,
            offline_token=st.sampled_from(["true", "false", "TRUE"]) | s.nasty_text,
        )
        return Request("GET", "/auth/token", query, headers)
    fields = _query(
        draw,
        grant_type=st.sampled_from(["password", "refresh_token"]) | s.nasty_text,
        username=st.from_regex(r"nobody[a-z]{0,6}", fullmatch=True) | s.nasty_text,
        password=s.nasty_text,
        refresh_token=s.forged_tokens(world),
        scope=scopes,
        access_type=st.sampled_from(["offline", "online"]) | s.nasty_text,
    )
    from urllib.parse import urlencode

    body = draw(
        st.one_of(
            st.just(urlencode(fields).encode()),
            st.binary(max_size=300),
            st.just(b"grant_type=password&" + b"a" * 70_000),
        )
    )
    headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    return Request("POST", "/auth/token", headers=headers, body=[body])


@st.composite
def anything(draw, world: World) -> Request:
    """Any method on a path made of pieces of the registry's own and hostile text."""
    pieces = (
        st.sampled_from(
            [
                "v2",
                "_catalog",
                "tags",
                "list",
                "manifests",
                "blobs",
                "uploads",
                "referrers",
                "auth",
                "token",
                "team",
                "app",
                "",
            ]
        )
        | s.nasty_text
    )
    path = "/" + "/".join(draw(st.lists(pieces, max_size=7)))
    return Request(
        draw(st.sampled_from(SIMPLE_METHODS)),
        path,
        headers=_authorization(draw, world),
        body=draw(s.chunk_bodies()),
    )


def any_request(world: World, manifests: list[bytes]) -> st.SearchStrategy[Request]:
    return st.one_of(
        base(world),
        catalog(world),
        tags_list(world),
        referrers(world),
        manifest(world, manifests),
        blob(world),
        start_upload(world),
        upload(world),
        token(world),
        anything(world),
    )
