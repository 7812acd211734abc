"""Calls to a rule's upstream registry: one connection pool per process (made on first
use, never per request), one RegistryClient (token flow: distribution_client.py) per
upstream repository kept for reuse, the rule's credentials, and every failure turned into
one of three outcomes the cache acts on:

- ``UpstreamDown``: unreachable, timed out, 5xx: serve a cached copy (stale, with a
  Warning) or answer 503 UNAVAILABLE with Retry-After;
- ``UpstreamLimited``: 429 (Docker Hub's pull limit): the same, but 429 TOOMANYREQUESTS;
- ``UpstreamDenied``: 401/403 after the token flow: the rule's credentials (or their
  absence) do not cover that repository. Answered DENIED, naming the rule, never a secret.

The password is read when an upstream call needs it: from the environment variable the
rule names (locally), or from its Secrets Manager secret (deployed; kept
SECRET_CACHE_SECONDS per process). It is never logged, put in an event or returned.

Every connection goes through outbound_urls.guarded_pool: names resolved, the address
checked and connected to as checked. Never link-local or cloud metadata; and when the
rule's upstream is on the internet, never an internal address either, whoever names it
(the upstream's redirect, its token realm, a DNS name, a numeric spelling like 2130706433).
An upstream an admin put on an internal network (spelled so, or a name resolving only to
internal addresses) may keep its token service and storage there too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import urllib3

from ..distribution_client import RegistryClient, RegistryClientError
from ..errors import Denied, TooManyRequests, Unavailable
from ..outbound_urls import (
    ConnectionRefusedByPolicy,
    guarded_pool,
    is_internal_host,
    literal_address,
    refused_address,
    resolves_internal,
)
from .rules import CacheRule, CacheRuleInvalid, CacheTarget

# Manifest types a cache asks for: every type clients pull, so that what is stored serves
# them all (an index first: multi-platform clients pick their platform from it).
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CLIENTS_KEPT = 256
SECRET_CACHE_SECONDS = 300
DEFAULT_RETRY_AFTER = 30
# A fill reads a blob's body: a long read timeout between packets, not for the whole body.
FILL_READ_TIMEOUT = 120
# How long whether a rule's upstream host is internal (a DNS lookup) is kept per process.
UPSTREAM_PLACE_SECONDS = 300


class UpstreamDown(Exception):
    def __init__(self, reason: str, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class UpstreamLimited(UpstreamDown):
    pass


class UpstreamDenied(Exception):
    pass


def retry_after_of(response: Any) -> int:
    value = (response.headers.get("Retry-After") or "").strip()
    if value.isascii() and value.isdigit():
        return min(int(value), 3600)
    return DEFAULT_RETRY_AFTER


def as_registry_error(error: Exception, target: CacheTarget) -> Exception:
    """The client-facing error for an upstream failure without a cached copy."""
    where = f"the upstream of cache rule {target.rule.prefix} ({target.rule.host})"
    if isinstance(error, UpstreamLimited):
        return TooManyRequests(
            {"upstream": target.rule.host},
            message=f"{where} limits our requests (HTTP 429); retry later",
            retry_after=error.retry_after,
        )
    if isinstance(error, UpstreamDown):
        return Unavailable(
            {"upstream": target.rule.host},
            message=f"{where} is unavailable ({error.reason}) and nothing is cached",
            retry_after=error.retry_after,
        )
    if isinstance(error, UpstreamDenied):
        return Denied(
            {"upstream": target.rule.host, "repository": target.upstream_name},
            message=f"{where} denied access to {target.upstream_name}: it does not exist there, or "
            "the rule's credentials do not cover it",
        )
    return error


def check_status(response: Any, what: str) -> None:
    """UpstreamDown/Limited/Denied for an answer that is none of 2xx, 3xx, 404."""
    status = response.status
    if status == 429:
        raise UpstreamLimited(f"{what}: HTTP 429", retry_after_of(response))
    if status in (401, 403):
        raise UpstreamDenied(f"{what}: HTTP {status}")
    if status >= 500 or status < 200 or status in (408, 425):
        raise UpstreamDown(f"{what}: HTTP {status}", retry_after_of(response))
    if 400 <= status < 500 and status != 404:
        raise UpstreamDown(f"{what}: HTTP {status}")


# An error answer's body is read to reuse the connection, up to this much; past it, or for a
# body nobody wants (a blob), the connection is closed instead.
DRAIN_LIMIT = 64 * 1024


def finish(response: Any) -> None:
    """Done with ``response``: its connection back to the pool when the body was read (or
    is short), else closed: never read a blob's body just to reuse a connection."""
    length = response.headers.get("Content-Length") or ""
    if response.status >= 300 and length.isascii() and length.isdigit() and int(length) <= DRAIN_LIMIT:
        response.drain_conn()
        return
    if getattr(response, "_fp", None) is not None and not response.isclosed():
        response.close()
    response.release_conn()


# Redirects followed to reach a blob's bytes (the registry, then its storage or CDN).
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
# An upstream's redirect to its storage: presigned URLs with session tokens run long.
MAX_REDIRECT_LENGTH = 16 * 1024


def checked_redirect(url: str, upstream: str, upstream_internal: bool | None = None) -> SplitResult:
    """``url``'s parts, when a redirect from ``upstream`` (the rule's URL) may be followed or
    handed to a client: http(s), a host that is not link-local (cloud metadata lives there),
    no credentials, ASCII without spaces; and, from an upstream on the internet, no internal
    address (a public registry has no business sending the fill function into the VPC or
    onto its own loopback; an upstream an admin put on a private address may keep its
    storage there too). Else UpstreamDown saying why. ``upstream_internal``: where the
    upstream is, as Upstreams.internal_allowed found it (its name resolved); None judges
    it by its spelling."""
    parts = urlsplit(url)
    if upstream_internal is None:
        upstream_internal = is_internal_host(urlsplit(upstream).hostname or "")
    address = literal_address(parts.hostname or "")
    if (
        len(url) > MAX_REDIRECT_LENGTH
        or not url.isascii()
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or (address is not None and refused_address(address, allow_internal=True))
        or (is_internal_host(parts.hostname) and not upstream_internal)
    ):
        raise UpstreamDown("upstream redirected to a URL that is not followed")
    return parts


class Upstreams:
    def __init__(
        self,
        timeout_seconds: int,
        secrets: Callable[[], Any],
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_seconds
        self._secrets = secrets
        self._environ = environ
        self._clock = clock
        self._lock = threading.Lock()
        self._pools: dict[tuple[bool, bool, bool], urllib3.PoolManager] = {}
        # upstream hostname -> (when looked up, whether it is on an internal network)
        self._places: dict[str, tuple[float, bool]] = {}
        self._clients: OrderedDict[tuple, RegistryClient] = OrderedDict()
        self._secret_values: dict[str, tuple[float, tuple[str, str]]] = {}

    def internal_allowed(self, rule: CacheRule) -> bool:
        """Whether the rule's connections may reach internal addresses: only when its
        upstream is itself on an internal network (outbound_urls.resolves_internal)."""
        host = urlsplit(rule.upstream).hostname or ""
        now = self._clock()
        with self._lock:
            kept = self._places.get(host)
        if kept is not None and now - kept[0] < UPSTREAM_PLACE_SECONDS:
            return kept[1]
        internal = resolves_internal(host)
        with self._lock:
            self._places[host] = (now, internal)
        return internal

    def _pool(self, verify_tls: bool, for_fill: bool, allow_internal: bool) -> urllib3.PoolManager:
        with self._lock:
            pool = self._pools.get((verify_tls, for_fill, allow_internal))
            if pool is None:
                read = FILL_READ_TIMEOUT if for_fill else self._timeout
                pool = guarded_pool(
                    allow_internal=allow_internal,
                    verify_tls=verify_tls,
                    maxsize=16,
                    retries=False,
                    timeout=urllib3.Timeout(connect=self._timeout, read=read),
                )
                self._pools[(verify_tls, for_fill, allow_internal)] = pool
            return pool

    def credentials(self, rule: CacheRule) -> tuple[str, str] | None:
        if rule.secret:
            now = self._clock()
            kept = self._secret_values.get(rule.secret)
            if kept and now - kept[0] < SECRET_CACHE_SECONDS:
                return kept[1]
            try:
                value = json.loads(self._secrets().get_secret_value(SecretId=rule.secret)["SecretString"])
                pair = (str(value["username"]), str(value["password"]))
            except Exception as error:  # noqa: BLE001 - reported without the secret
                raise UpstreamDown(f"the rule's secret could not be read ({type(error).__name__})") from None
            self._secret_values[rule.secret] = (now, pair)
            return pair
        if rule.username and rule.password_env:
            password = self._environ.get(rule.password_env)
            if password is None:
                raise UpstreamDown(
                    f"the server's environment has no {rule.password_env} (the rule's password variable)"
                )
            return rule.username, password
        return None

    def client(self, target: CacheTarget, for_fill: bool = False) -> RegistryClient:
        rule = target.rule
        internal = self.internal_allowed(rule)
        key = (rule.prefix, rule.upstream, rule.created_ms, target.upstream_name, for_fill, internal)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
        client = RegistryClient(
            rule.host,
            target.upstream_name,
            credentials=self.credentials(rule),
            scheme=rule.scheme,
            http=self._pool(not rule.insecure, for_fill, internal),
            credentials_hint=f"cache rule {rule.prefix}",
        )
        with self._lock:
            self._clients[key] = client
            while len(self._clients) > CLIENTS_KEPT:
                self._clients.popitem(last=False)
        return client

    def anonymous_urls(self, target: CacheTarget) -> bool:
        """Whether the upstream's own URLs for ``target`` can be fetched by a client without
        anything from us: a rule without credentials, and an upstream that answered without
        asking for a token (an anonymous token would be ours to hand on: a client sent to
        the URL gets a 401 on a host it has no login for)."""
        return not target.rule.has_credentials and not self.client(target).authorized

    def request(
        self,
        target: CacheTarget,
        method: str,
        path: str,
        headers: dict | None = None,
        *,
        for_fill: bool = False,
    ) -> Any:
        """One authorized request (redirects not followed; the body not read), with
        transport failures and token-endpoint refusals turned into UpstreamDown/Denied."""
        client = self.client(target, for_fill)
        try:
            return client.request(method, path, headers=headers, preload=False)
        except RegistryClientError as error:
            # Only the token endpoint raises here: its answer, never our credentials.
            if " 401" in str(error) or " 403" in str(error):
                raise UpstreamDenied("the token endpoint refused the rule's credentials") from None
            raise UpstreamDown("the token endpoint failed") from None
        except urllib3.exceptions.HTTPError as error:
            raise UpstreamDown(transport_failure(error)) from None

    def open_blob(
        self, target: CacheTarget, digest: str, headers: dict | None = None, *, for_fill: bool = False
    ) -> Any:
        """Upstream's answer carrying the blob's bytes (the body not read): ``GET
        /v2/<name>/blobs/<digest>``, its redirects followed, on the upstream's own host with
        the rule's credentials, elsewhere (its storage) without them, and only where
        checked_redirect allows."""
        response = self.request(
            target, "GET", f"/v2/{target.upstream_name}/blobs/{digest}", headers, for_fill=for_fill
        )
        base = target.rule.upstream
        for _ in range(MAX_REDIRECTS):
            if response.status not in REDIRECTS:
                break
            location = urljoin(f"{base}/", response.headers.get("Location") or "")
            finish(response)
            parts = checked_redirect(location, base, self.internal_allowed(target.rule))
            if f"{parts.scheme}://{parts.netloc}" == base:
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                response = self.request(target, "GET", path, headers, for_fill=for_fill)
            else:
                response = self.get_url(target, location, headers)
        return response

    def get_url(self, target: CacheTarget, url: str, headers: dict | None = None) -> Any:
        """GET an upstream's storage URL (its blob redirect), without our credentials."""
        rule = target.rule
        pool = self._pool(not rule.insecure, True, self.internal_allowed(rule))
        try:
            return pool.request("GET", url, headers=headers, redirect=False, preload_content=False)
        except urllib3.exceptions.HTTPError as error:
            raise UpstreamDown(transport_failure(error)) from None


def transport_failure(error: Exception) -> str:
    """What UpstreamDown says of a transport failure: the refused address (a fault of the
    upstream's, worth naming), else the failure's kind only (its text may hold a URL with
    a presigned signature)."""
    if isinstance(error, ConnectionRefusedByPolicy):
        return error.why
    return type(error).__name__


PROBE_TIMEOUT = urllib3.Timeout(connect=5, read=10)


def probe_upstream(rule: CacheRule) -> None:
    """``GET /v2/`` of the rule's upstream, without credentials (distribution-spec
    "Determining support"): 200, or 401 with a challenge, is a registry. Else
    CacheRuleInvalid saying what answered: a typo in the URL is caught when the rule is
    added, not at the first pull. Through the same guarded connections as the cache."""
    pool = guarded_pool(
        allow_internal=resolves_internal(urlsplit(rule.upstream).hostname or ""),
        verify_tls=not rule.insecure,
        retries=False,
        timeout=PROBE_TIMEOUT,
    )
    try:
        response = pool.request("GET", f"{rule.upstream}/v2/", redirect=False, preload_content=False)
    except urllib3.exceptions.HTTPError as error:
        raise CacheRuleInvalid(
            f"the upstream {rule.upstream} is unreachable ({transport_failure(error)}): check the URL, "
            "or add --no-probe if only the registry's own network reaches it"
        ) from None
    try:
        challenged = response.status == 401 and response.headers.get("WWW-Authenticate")
        if response.status != 200 and not challenged:
            raise CacheRuleInvalid(
                f"{rule.upstream}/v2/ answered HTTP {response.status}, not as a registry (200, or 401 "
                "with a challenge): check the URL, or add --no-probe"
            )
    finally:
        finish(response)
        pool.clear()
