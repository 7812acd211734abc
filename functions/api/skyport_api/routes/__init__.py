"""HTTP routes, one module per OCI concept: parse the request, call one service, render."""

from fastapi import Request
from skyport.registry import Registry


def registry_of(request: Request) -> Registry:
    return request.app.state.registry
