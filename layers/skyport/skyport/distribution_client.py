"""An OCI Distribution client: one pooled urllib3 connection manager shared by every
thread, and the Docker token flow. Used by `skyport push` and `skyport pull` (the CLI)
and by replication to an OCI registry (skyport.replication.destinations).

Credentials are given by the caller (the CLI: --username or docker's config.json; a
replication rule: its Secrets Manager secret), else anonymous. A 401 with a Bearer
challenge sends us to its realm for a token of the challenge's scope (token spec: GET
with Basic credentials); a Basic challenge gets the credentials themselves.

urllib3 is a core dependency already (botocore's), so the core needs nothing new.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from .outbound_urls import guarded_pool, tls_settings

_REFERENCE = re.compile(
    r"^(?P<host>[^/]+)/(?P<name>[a-z0-9._/-]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$"
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
DEFAULT_CHUNK = 8 * 1024 * 1024
# A chunk is held in memory while sent: a registry asking for more per chunk than this is
# answered with DEFAULT_CHUNK-sized chunks (and refuses them: the reason says so).
MAX_CHUNK = 128 * 1024 * 1024


class RegistryClientError(Exception):
    """A registry answer the command cannot go on from; the message says what, ``status``
    the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    name: str
    tag: str

    @classmethod
    def parse(cls, text: str, default_tag: str = "latest") -> Target:
        match = _REFERENCE.fullmatch(text)
        if not match:
            raise RegistryClientError(f"not a registry reference (host[:port]/name[:tag]): {text!r}")
        return cls(match["host"], match["name"], match["tag"] or default_tag)


def is_loopback(host: str) -> bool:
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return bare in ("localhost", "[::1]") or bare.startswith("127.")


def new_pool(
    connections: int = 16, verify_tls: bool = True, *, outbound: bool = False
) -> urllib3.PoolManager:
    """A connection pool for RegistryClient; ``verify_tls=False`` accepts any certificate
    (a replication rule's --insecure, for a registry with a self-signed one). ``outbound``:
    a registry an admin named for a function to call (replication), connected to only
    through outbound_urls.connect_checked (never link-local or cloud metadata, whatever the
    name resolves to); the CLI, on the user's own machine, calls where it is told."""
    settings = {"maxsize": connections, "retries": False, "timeout": urllib3.Timeout(30, 300)}
    if outbound:
        return guarded_pool(allow_internal=True, verify_tls=verify_tls, **settings)
    return urllib3.PoolManager(**tls_settings(verify_tls), **settings)


class RegistryClient:
    def __init__(
        self,
        host: str,
        name: str,
        *,
        credentials: tuple[str, str] | None = None,
        insecure: bool = False,
        connections: int = 16,
        scheme: str | None = None,
        verify_tls: bool = True,
        http: urllib3.PoolManager | None = None,
        credentials_hint: str = "docker login, or --username with SKYPORT_PASSWORD",
    ) -> None:
        self._credentials_hint = credentials_hint
        self.host = host
        self.name = name
        # The URL's scheme when the caller has one (replication rules); else plain http for
        # --insecure and loopback hosts, as docker treats 127.0.0.0/8.
        self.scheme = scheme or ("http" if insecure or is_loopback(host) else "https")
        self._credentials = credentials
        self.http = http or new_pool(connections, verify_tls)
        self._authorization: str | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    @property
    def authorized(self) -> bool:
        """Whether the registry asked for authorization (a challenge was answered): its
        URLs then need more than a plain anonymous GET, even without credentials (an
        anonymous token)."""
        return self._authorization is not None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        preload: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """A request to the registry, authorized (once more after a 401 challenge)."""
        for attempt in range(2):
            sent = dict(headers or {})
            if self._authorization:
                sent["Authorization"] = self._authorization
            response = self.http.request(
                method, self.url(path), body=body, headers=sent, redirect=False, preload_content=preload
            )
            if response.status != 401 or attempt:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.drain_conn()
            if not self._answer(challenge):
                return response
        return response

    def _answer(self, challenge: str) -> bool:
        """Get what the challenge asks for; False when there is nothing to try."""
        scheme, _, rest = challenge.partition(" ")
        basic = None
        if self._credentials:
            basic = "Basic " + base64.b64encode(":".join(self._credentials).encode()).decode()
        if scheme.lower() == "basic":
            if basic is None:
                return False
            with self._lock:
                self._authorization = basic
            return True
        if scheme.lower() != "bearer":
            return False
        params = {key: value.replace('\\"', '"') for key, value in _CHALLENGE_PARAM.findall(rest)}
        realm = params.get("realm")
        if not realm:
            return False
        query = {"service": params.get("service", "")}
        # Push needs pull too (HEAD of what exists); ask both at once.
        query["scope"] = params.get("scope") or f"repository:{self.name}:pull,push"
        headers = {"Authorization": basic} if basic else {}
        answer = self.http.request("GET", f"{realm}?{urlencode(query)}", headers=headers, redirect=False)
        if answer.status != 200:
            raise RegistryClientError(f"token endpoint answered {answer.status}: {answer.data[:300]!r}")
        try:
            document = json.loads(answer.data)
        except ValueError:
            raise RegistryClientError("token endpoint answered something that is not JSON") from None
        if not isinstance(document, dict):
            raise RegistryClientError("token endpoint answered something that is not a JSON object")
        token = document.get("token") or document.get("access_token")
        if not token:
            return False
        with self._lock:
            self._authorization = f"Bearer {token}"
        return True

    def login(self, actions: str) -> None:
        """Settle the credentials before threads start: GET /v2/, and for a Bearer
        challenge a token for this repository with ``actions`` (e.g. "pull,push")."""
        response = self.http.request("GET", self.url("/v2/"), redirect=False)
        if response.status != 401:
            if response.status >= 500:
                raise self.fail(response, "GET /v2/")
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "bearer":
            params = dict(_CHALLENGE_PARAM.findall(rest))
            params["scope"] = f"repository:{self.name}:{actions}"
            challenge = "Bearer " + ",".join(f'{key}="{value}"' for key, value in params.items())
        if not self._answer(challenge):
            raise RegistryClientError("the registry wants credentials: docker login, or --username")

    def fail(self, response: urllib3.BaseHTTPResponse, what: str) -> RegistryClientError:
        text = response.data[:500].decode(errors="replace")
        hint = ""
        if response.status == 401:
            hint = f" (credentials: {self._credentials_hint})"
        elif response.status == 403:
            hint = " (these credentials may not push to this repository)"
        return RegistryClientError(f"{what}: HTTP {response.status}: {text}{hint}", response.status)

    # --- what replication needs (skyport.replication.destinations) ------------------------

    def blob_exists(self, digest: str) -> bool:
        """HEAD the blob (distribution-spec "Checking if content exists in the registry")."""
        response = self.request("HEAD", f"/v2/{self.name}/blobs/{digest}")
        response.drain_conn()
        if response.status in (200, 307):  # a redirect to storage: it is there
            return True
        if response.status == 404:
            return False
        raise self.fail(response, f"HEAD blob {digest}")

    def upload_blob(self, digest: str, chunks: Iterable[bytes], chunk_size: int = DEFAULT_CHUNK) -> int:
        """Upload a blob from ``chunks`` (any sizes) in a chunked upload (distribution-spec
        "Pushing a blob in chunks"): POST, then PATCHes of ``chunk_size`` bytes with
        Content-Range and Content-Length, then PUT ``?digest=``. At most one chunk is held
        in memory, so a blob of any size goes up in bounded memory; a registry that
        advertises ``OCI-Chunk-Min-Length`` gets chunks of that size. Returns the bytes
        sent."""
        start = self.request("POST", f"/v2/{self.name}/blobs/uploads/")
        start.drain_conn()
        if start.status != 202:
            raise self.fail(start, f"starting the upload of {digest}")
        location = self._location(start, f"starting the upload of {digest}")
        advertised = start.headers.get("OCI-Chunk-Min-Length", "")
        if advertised.isascii() and advertised.isdigit() and 0 < int(advertised) <= MAX_CHUNK:
            # Exactly the minimum: enough for the registry, and Skyport behind API Gateway
            # advertises what one request may carry there, so more would be refused.
            chunk_size = int(advertised)
        offset = 0
        for chunk in _rechunk(chunks, chunk_size):
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            }
            response = self.request("PATCH", location, body=chunk, headers=headers)
            response.drain_conn()
            if response.status != 202:
                raise self.fail(response, f"uploading {digest} at offset {offset}")
            location = self._location(response, f"uploading {digest}")
            offset += len(chunk)
        separator = "&" if "?" in location else "?"
        finish = self.request(
            "PUT", f"{location}{separator}digest={digest}", body=b"", headers={"Content-Length": "0"}
        )
        finish.drain_conn()
        if finish.status != 201:
            raise self.fail(finish, f"finishing the upload of {digest}")
        return offset

    def _location(self, response: urllib3.BaseHTTPResponse, what: str) -> str:
        """The upload's next URL: the Location as answered, kept whole (its query may carry a
        state or a capability), resolved against the registry's URL when relative."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryClientError(f"{what}: the registry answered no Location")
        absolute = urljoin(self.url("/"), location)
        parts = urlsplit(absolute)
        if f"{parts.scheme}://{parts.netloc}" == f"{self.scheme}://{self.host}":
            return parts.path + (f"?{parts.query}" if parts.query else "")
        return absolute

    def manifest(self, reference: str, accept: Iterable[str]) -> tuple[str, str, bytes] | None:
        """GET a manifest: (digest, media type, body), or None when the registry has none."""
        response = self.request(
            "GET", f"/v2/{self.name}/manifests/{reference}", headers={"Accept": ", ".join(accept)}
        )
        if response.status == 404:
            return None
        if response.status != 200:
            raise self.fail(response, f"GET manifest {reference}")
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        return response.headers.get("Docker-Content-Digest", ""), media_type, response.data

    def manifest_digest(self, reference: str, accept: Iterable[str]) -> str | None:
        """HEAD a manifest: the digest the registry answers (Docker-Content-Digest), or None
        when it has no such manifest."""
        response = self.request(
            "HEAD", f"/v2/{self.name}/manifests/{reference}", headers={"Accept": ", ".join(accept)}
        )
        response.drain_conn()
        if response.status == 404:
            return None
        if response.status != 200:
            raise self.fail(response, f"HEAD manifest {reference}")
        return response.headers.get("Docker-Content-Digest") or ""

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> None:
        response = self.request(
            "PUT", f"/v2/{self.name}/manifests/{reference}", body=body, headers={"Content-Type": media_type}
        )
        response.drain_conn()
        if response.status != 201:
            raise self.fail(response, f"PUT manifest {reference}")

    def delete_manifest(self, reference: str) -> bool:
        """DELETE a manifest by digest, or a tag (distribution-spec 1.1 "Deleting tags").
        False when the registry has none by that reference."""
        response = self.request("DELETE", f"/v2/{self.name}/manifests/{reference}")
        response.drain_conn()
        if response.status == 404:
            return False
        if response.status not in (200, 202):
            raise self.fail(response, f"DELETE manifest {reference}")
        return True

    def tags(self) -> list[str]:
        """Every tag of the repository (distribution-spec "Listing Tags"), following the
        Link header's next page; [] when the repository is unknown."""
        found: list[str] = []
        path: str | None = f"/v2/{self.name}/tags/list"
        while path:
            response = self.request("GET", path)
            if response.status == 404:
                return found
            if response.status != 200:
                raise self.fail(response, "listing tags")
            try:
                listed = json.loads(response.data).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryClientError("listing tags: the answer is not a tag list") from None
            found.extend(tag for tag in listed if isinstance(tag, str))
            path = _next_page(response.headers.get("Link", ""))
        return found


_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_page(link: str) -> str | None:
    match = _LINK_NEXT.search(link)
    if not match:
        return None
    parts = urlsplit(match[1])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``pieces`` regrouped into chunks of exactly ``size`` bytes (the last one shorter),
    holding at most one chunk at a time."""
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece)
        while view:
            room = size - len(buffer)
            buffer += view[:room]
            view = view[room:]
            if len(buffer) == size:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)
