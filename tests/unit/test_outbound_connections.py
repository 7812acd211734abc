"""Where Skyport's outbound connections may go, checked at the connection itself
(skyport.outbound_urls.connect_checked and guarded_pool): the name is resolved there and
the socket connected to the address that was checked, so neither a numeric spelling nor a
DNS name leads a function somewhere its URL check would have refused.

A real HTTP server on 127.0.0.1 counts what reaches it: a refused connection must reach
nothing. An upstream on the internet cannot be stood up here, so the pull-through cache's
"public upstream" is a rule whose host does not resolve (as an upstream on the internet,
it is not internal); its connections to 127.0.0.1 are the ones refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3
from http_stub import serve_http
from skyport.outbound_urls import (
    AddressRefused,
    ConnectionRefusedByPolicy,
    connect_checked,
    guarded_pool,
    resolves_internal,
)
from skyport.pull_through.rules import CacheRule, CacheTarget
from skyport.pull_through.upstream import UpstreamDown, Upstreams


class _Counting(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    with serve_http(_Counting) as httpd:
        httpd.hits = []  # type: ignore[attr-defined]
        yield httpd


def _port(server: ThreadingHTTPServer) -> int:
    return server.server_address[1]


# 127.0.0.1 as a resolver reads it, and a DNS name of it.
LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "localhost"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_internal_addresses_are_refused_when_not_allowed_and_reach_nothing(server, host):
    pool = guarded_pool(allow_internal=False, retries=False)
    with pytest.raises(ConnectionRefusedByPolicy, match="internal address") as refused:
        pool.request("GET", f"http://{host}:{_port(server)}/v2/", redirect=False)
    assert "127.0.0.1" in refused.value.why or "::1" in refused.value.why
    assert server.hits == []


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_the_same_addresses_are_reached_where_internal_is_allowed(server, host):
    pool = guarded_pool(allow_internal=True, retries=False)
    response = pool.request("GET", f"http://{host}:{_port(server)}/v2/", redirect=False)
    assert response.status == 200 and server.hits == ["/v2/"]


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",
        "169.254.43518",
        "0xa9.0xfe.0xa9.0xfe",
        "169.254.170.2",
        "fe80::1",
        "fd00:ec2::254",
    ],
)
@pytest.mark.parametrize("allow_internal", [True, False])
def test_link_local_and_cloud_metadata_are_never_connected_to(host, allow_internal):
    started = time.monotonic()
    with pytest.raises(AddressRefused, match="link-local or cloud metadata"):
        connect_checked(host, 80, 5.0, allow_internal=allow_internal)
    # Refused before any connect (none could succeed here: it would time out instead).
    assert time.monotonic() - started < 1


def test_a_host_name_no_resolver_takes_is_refused_not_raised():
    """A label over 63 characters fails IDNA encoding inside getaddrinfo (UnicodeError, not
    an OSError): refused like any address, so callers answer it as an upstream fault."""
    long_label = "a" * 64 + ".example"
    with pytest.raises(AddressRefused, match="not a valid host name"):
        connect_checked(long_label, 80, 5.0, allow_internal=True)
    pool = guarded_pool(allow_internal=False, retries=False)
    with pytest.raises(ConnectionRefusedByPolicy):
        pool.request("GET", f"http://{long_label}/v2/", redirect=False)
    with pytest.raises(UpstreamDown, match="not a valid host name"):
        _upstreams().get_url(_target("https://registry.invalid"), f"http://{long_label}/blob")


def test_a_name_that_does_not_resolve_is_a_resolution_error_not_a_refusal():
    pool = guarded_pool(allow_internal=False, retries=False)
    with pytest.raises(urllib3.exceptions.NameResolutionError):
        pool.request("GET", "http://registry.invalid/v2/", redirect=False)


def test_where_an_upstream_is_judged_to_be():
    assert resolves_internal("127.0.0.1") and resolves_internal("localhost") and resolves_internal("10.0.0.5")
    assert resolves_internal("2130706433")
    assert not resolves_internal("8.8.8.8")
    assert not resolves_internal("registry.invalid")  # unresolvable: never internal
    assert not resolves_internal("a" * 64 + ".example")  # a name no resolver takes


def _target(upstream: str) -> CacheTarget:
    return CacheTarget(CacheRule("hub", upstream), "hub/team/app", "team/app")


def _upstreams() -> Upstreams:
    return Upstreams(5, secrets=lambda: None, environ={})


@pytest.mark.parametrize("host", ["127.1", "2130706433", "localhost", "[::ffff:127.0.0.1]"])
def test_a_public_upstreams_storage_redirect_into_the_machine_is_refused(server, host):
    """The fill follows an upstream's redirect with Upstreams.get_url: from an upstream on
    the internet, to an internal address it is refused whatever its spelling."""
    with pytest.raises(UpstreamDown, match="internal address"):
        _upstreams().get_url(_target("https://registry.invalid"), f"http://{host}:{_port(server)}/blob")
    assert server.hits == []


def test_a_public_upstreams_token_realm_in_the_machine_is_refused(server):
    """The registry client of a rule (the upstream, its token realm: every URL it calls)
    connects through the same guarded pool."""
    client = _upstreams().client(_target("https://registry.invalid"))
    with pytest.raises(ConnectionRefusedByPolicy):
        client.http.request("GET", f"http://localhost:{_port(server)}/token?scope=x", redirect=False)
    assert server.hits == []


def test_an_internal_upstream_keeps_its_storage_internal(server):
    target = _target(f"http://127.0.0.1:{_port(server)}")
    response = _upstreams().get_url(target, f"http://127.1:{_port(server)}/blob")
    assert response.status == 200 and server.hits == ["/blob"]
