"""HTTP routes, one module per OCI concept: parse the request, call one service, render.

Every route is ``async def`` and runs each blocking service call as
``skyport.concurrency`` documents: ``await run_blocking(fn, ..., inline=inline(request))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator

from fastapi import Request
from skyport.registry import Registry


class Routes:
    """The routes of one OCI concept, added to the app once by ``create_app``.

    Not an ``APIRouter``, for the cold start: FastAPI analyses every endpoint
    parameter into a pydantic field (and imports ``pydantic.v1`` to rule out v1
    models), and ``include_router`` builds every route a second time. Here FastAPI
    sees endpoints that take only the ``Request``, so it builds no fields; the path
    parameters (always strings) reach the endpoint as keyword arguments.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, str, Callable]] = []

    def __iter__(self) -> Iterator[tuple[str, str, Callable]]:
        return iter(self._entries)

    def route(self, method: str, path: str) -> Callable[[Callable], Callable]:
        def register(endpoint: Callable) -> Callable:
            self._entries.append((method, path, _request_only(endpoint)))
            return endpoint

        return register

    def get(self, path: str):
        return self.route("GET", path)

    def head(self, path: str):
        return self.route("HEAD", path)

    def post(self, path: str):
        return self.route("POST", path)

    def put(self, path: str):
        return self.route("PUT", path)

    def patch(self, path: str):
        return self.route("PATCH", path)

    def delete(self, path: str):
        return self.route("DELETE", path)


def _request_only(endpoint: Callable) -> Callable:
    """``endpoint(request, **path_params)`` behind a signature of just the request.
    Every endpoint is ``async def``: blocking work inside goes through
    skyport.concurrency, never FastAPI's own threadpool. No functools.wraps: FastAPI
    would follow ``__wrapped__`` back to the parameters."""
    if not inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"{endpoint.__qualname__}: routes are async def (skyport.concurrency)")

    async def call(request: Request):
        return await endpoint(request, **request.path_params)

    call.__name__, call.__qualname__ = endpoint.__name__, endpoint.__qualname__
    call.__doc__ = endpoint.__doc__
    return call


def registry_of(request: Request) -> Registry:
    return request.app.state.registry


def access_of(request: Request):
    """What the caller may do (skyport.auth.policy.Access), as the auth dependency decided;
    None when auth is off (everything is allowed)."""
    return getattr(request.state, "access", None)


def owner_of(request: Request) -> str | None:
    """Who owns the upload sessions this request starts or uses (None: auth off)."""
    access = access_of(request)
    return access.subject if access is not None else None


def inline(request: Request) -> bool:
    """``run_blocking``'s ``inline`` for this request: true where each request has the
    process to itself (Lambda; ``create_app(one_request_at_a_time=True)``), where the
    thread hop would cost more than the call it carries (skyport.concurrency)."""
    return request.app.state.one_request_at_a_time
