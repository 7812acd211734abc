"""HTTP routes, one module per OCI concept: parse the request, call one service, render."""

from fastapi import Request
from skyport.registry import Registry
from starlette.concurrency import run_in_threadpool


def registry_of(request: Request) -> Registry:
    return request.app.state.registry


def access_of(request: Request):
    """What the caller may do (skyport.access.Access), as the auth dependency decided;
    None when auth is off (everything is allowed)."""
    return getattr(request.state, "access", None)


def owner_of(request: Request) -> str | None:
    """Who owns the upload sessions this request starts or uses (None: auth off)."""
    access = access_of(request)
    return access.subject if access is not None else None


async def blocking(request: Request, fn, /, *args, **kwargs):
    """Run a blocking storage call from an ``async def`` route. Where each request has
    the process to itself (Lambda), inline: the thread hop a plain ``def`` route pays
    costs more than the route's own work. Under a server (uvicorn), in the threadpool,
    so that one slow call does not hold up the other requests."""
    if request.app.state.one_request_at_a_time:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)
