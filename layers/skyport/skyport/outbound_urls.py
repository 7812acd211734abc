"""The one check of the http(s) URLs admins give Skyport to call out to: webhook receivers
(webhooks.py) and replication destinations (replication/rules.py).

The functions that call them run with AWS credentials, so what a URL may name is narrow:
- http:// or https:// only: other schemes (file:, gopher:, ...) would make the function
  fetch whatever they name;
- ASCII, no spaces or control characters, at most MAX_URL_LENGTH characters;
- no credentials (the URL is stored in the table and listed by the CLI: secrets go to
  Secrets Manager), no #fragment, a port in 1-65535;
- no link-local address (169.254.0.0/16, fe80::/10): cloud metadata and container
  credential endpoints live there. Private addresses are an admin's choice; deployed, they
  are reachable from the function's VPC only (README, Hooks).

A URL's spelling is not where it leads: ``2852039166``, ``169.254.43518`` and
``0xa9.254.169.254`` are 169.254.169.254 to the system's resolver, and a DNS name may
resolve to any address. So a spelling is read as the resolver reads it
(:func:`literal_address`), and every connection Skyport opens to such a URL goes through
:func:`connect_checked`: the name is resolved there, each address checked, and the socket
connected to the very address that was checked, so a DNS answer cannot change between
the check and the connect (rebinding). :func:`guarded_pool` is a urllib3 pool whose
connections all do that (replication, the pull-through cache); the webhook sender opens
its http.client connections with it.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any
from urllib.parse import SplitResult, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

MAX_URL_LENGTH = 2048
HTTP_SCHEMES = ("http", "https")


class UrlRefused(ValueError):
    """Why a URL may not be called; the message is for the admin who gave it."""


def check_http_url(url: str, what: str, credentials_hint: str = "") -> SplitResult:
    """``url``'s parts, when it is one Skyport may call (module docstring); else UrlRefused
    naming ``what`` ("a webhook URL", "the destination URL")."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or not url.isascii():
        raise UrlRefused(f"{what} is an ASCII http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlRefused(f"{what} holds no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"{what} is not a URL: {error}") from None
    if parts.scheme not in HTTP_SCHEMES:
        raise UrlRefused(f"{what} is http:// or https://, not {parts.scheme or 'relative'!r}")
    if not parts.hostname:
        raise UrlRefused(f"{what} names no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(f"{what} must not carry credentials (it is stored and listed)" + credentials_hint)
    if parts.fragment:
        raise UrlRefused(f"{what} has no #fragment")
    if port == 0:
        raise UrlRefused(f"{what}'s port is 1-65535")
    address = literal_address(parts.hostname)
    if address is not None and refused_address(address, allow_internal=True):
        raise UrlRefused(f"{parts.hostname} is link-local (cloud metadata endpoints live there)")
    return parts


Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata and credentials endpoints: link-local (169.254.169.254, 169.254.170.2,
# fe80::/10), and EC2's IPv6 instance metadata service, which lives in unique-local space.
EC2_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")
_LEGACY_IPV4 = frozenset("0123456789abcdefx.")


def literal_address(host: str) -> Address | None:
    """``host`` as the address it spells, read as the system's resolver reads it: the usual
    forms (brackets, a trailing dot and an IPv6 zone dropped; an IPv4-mapped IPv6 address
    as its IPv4 address), and the legacy IPv4 forms inet_aton(3) accepts (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``), which would otherwise pass for DNS
    names. None for a DNS name."""
    bare = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".").split("%", 1)[0]
    address: Address
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if not bare or not set(bare) <= _LEGACY_IPV4:
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refused_address(address: Address, allow_internal: bool) -> str | None:
    """Why Skyport must not connect to ``address``, or None: link-local and cloud metadata
    from anywhere; with ``allow_internal`` False (a pull-through rule whose upstream is on
    the internet) every address that is not global too: loopback, RFC 1918, unique-local,
    shared (100.64/10), unspecified (0.0.0.0 is this machine) and reserved ones."""
    if address.is_link_local or (address.version == 6 and address in EC2_METADATA_V6):
        return "a link-local or cloud metadata address"
    if not allow_internal and not address.is_global:
        return "an internal address"
    return None


class AddressRefused(OSError):
    """A connection Skyport will not open (:func:`connect_checked`); says which address and why."""


def connect_checked(
    host: str,
    port: int,
    timeout: float | None,
    *,
    allow_internal: bool,
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
) -> socket.socket:
    """socket.create_connection, but only to addresses :func:`refused_address` lets through:
    ``host`` is resolved here, each address checked, and the socket connected to that very
    address. AddressRefused when every address was refused; the last OSError when the
    allowed ones could not be reached."""
    refusal: str | None = None
    error: OSError | None = None
    try:
        found = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except UnicodeError:
        # The IDNA encoding of the name failed (a label empty or over 63 characters): no
        # such host can exist. urllib3's own create_connection refuses it the same way.
        raise AddressRefused(f"{host[:80]!r} is not a valid host name") from None
    for family, kind, proto, _, sockaddr in found:
        address = literal_address(str(sockaddr[0]))
        why = "not an IP address" if address is None else refused_address(address, allow_internal)
        if why:
            spelled = literal_address(host) is not None
            refusal = f"{address} is {why}" if spelled else f"{host} resolves to {address}, {why}"
            continue
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as failure:
            error = failure
            sock.close()
    if error is not None:
        raise error
    raise AddressRefused(refusal or f"{host} resolves to no address")


class ConnectionRefusedByPolicy(NewConnectionError):
    """urllib3's face of AddressRefused: ``why`` says which address and why."""

    def __init__(self, conn: Any, why: str) -> None:
        super().__init__(conn, f"not connected: {why}")
        self.why = why


def _guarded(base: type[HTTPConnection], allow_internal: bool) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[misc, valid-type]
        def _new_conn(self) -> socket.socket:
            # urllib3's own _new_conn, with connect_checked for create_connection.
            try:
                sock = connect_checked(
                    self._dns_host,
                    self.port,
                    self.timeout,
                    allow_internal=allow_internal,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except AddressRefused as refused:
                raise ConnectionRefusedByPolicy(self, str(refused)) from None
            except socket.gaierror as error:
                raise NameResolutionError(self.host, self, error) from error
            except TimeoutError as error:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from error
            except OSError as error:
                raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def _pool_classes(allow_internal: bool) -> dict[str, type[HTTPConnectionPool]]:
    class Plain(HTTPConnectionPool):
        ConnectionCls = _guarded(HTTPConnection, allow_internal)

    class Tls(HTTPSConnectionPool):
        ConnectionCls = _guarded(HTTPSConnection, allow_internal)  # type: ignore[assignment]

    return {"http": Plain, "https": Tls}


_POOL_CLASSES = {allowed: _pool_classes(allowed) for allowed in (False, True)}


def tls_settings(verify_tls: bool) -> dict[str, Any]:
    """urllib3.PoolManager arguments: verify certificates, or (an admin's --insecure, for a
    self-signed certificate) accept any."""
    return {} if verify_tls else {"cert_reqs": "CERT_NONE", "assert_hostname": False}


def guarded_pool(
    *, allow_internal: bool, verify_tls: bool = True, **pool_manager_kw: Any
) -> urllib3.PoolManager:
    """A urllib3.PoolManager (``pool_manager_kw`` as its own) whose every connection, to the
    URLs asked and to wherever they lead (a token realm, a storage redirect), goes through
    :func:`connect_checked`."""
    pool = urllib3.PoolManager(**tls_settings(verify_tls), **pool_manager_kw)
    pool.pool_classes_by_scheme = _POOL_CLASSES[allow_internal]  # type: ignore[assignment]
    return pool


def is_internal_host(host: str) -> bool:
    """Whether ``host`` names this machine or a private network by its spelling: a literal
    address that is not global, or ``localhost`` (and its subdomains). A DNS name is not
    resolved here."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = literal_address(name)
    return address is not None and not address.is_global


def resolves_internal(host: str) -> bool:
    """Whether ``host`` is internal by its spelling, or a DNS name every address of which is
    internal (an admin's registry inside the VPC). False when it does not resolve."""
    if is_internal_host(host):
        return True
    if literal_address(host) is not None:
        return False
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode, no such host
        return False
    addresses = [literal_address(str(info[4][0])) for info in infos]
    return bool(addresses) and all(a is not None and not a.is_global for a in addresses)
