"""How Skyport runs blocking work from async code: one idiom, defined here.

Every storage call is blocking (boto3 over urllib3), and so is a password hash or a
key fetched from Secrets Manager. Async code (the routes, the upload writer, the
authorizer) must not run such work on the event loop, where it would hold up every
other request the server has in flight. It awaits :func:`run_blocking` instead:

    record = await run_blocking(blobs.stat, repository, digest)

Where the process serves one request at a time (Lambda), the thread hop costs more
than it saves: a caller that knows so passes ``inline=True`` and the call runs right
there, on the loop. Work that must overlap with reading a body (a part uploading
while the next one fills) never runs inline: it is scheduled with
:func:`start_blocking` and awaited later.

In the API function every route and the authorizer are ``async def`` and call each
blocking service method so, passing ``inline`` from the app (``skyport_api.routes.
inline``: true behind Lambda's handler, false under uvicorn). Nothing else hands work
to a thread: no plain ``def`` routes (FastAPI's own threadpool), no
``asyncio.to_thread``, no Starlette ``run_in_threadpool``.

The threads come from one pool per process, created on first use (never at import)
and sized like the boto3 connection pool (``storage.clients``), so a thread never
waits for a connection. Context variables (a request's correlation id, the tracer's
segment) follow the call into the thread, as with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")

# boto3's max_pool_connections in storage/clients.py: one connection per thread.
MAX_THREADS = 32

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                # futures.ThreadPoolExecutor is imported on this first use (the package
                # loads it lazily), not during Lambda's init phase.
                _pool = futures.ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="skyport-io")
    return _pool


def start_blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Start ``fn(*args, **kwargs)`` in the pool now; await the future when its result
    is needed. Must be called from a running event loop."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return loop.run_in_executor(_executor(), call)


async def run_blocking(fn: Callable[..., T], /, *args: Any, inline: bool = False, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` off the event loop (or on it, ``inline``: one request
    per process), its result or its exception returned to the awaiting coroutine."""
    if inline:
        return fn(*args, **kwargs)
    return await start_blocking(fn, *args, **kwargs)
