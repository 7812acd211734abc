"""An OCI Distribution client for `skyport push` and `skyport pull`: one pooled
urllib3 connection manager shared by every thread, and the Docker token flow.

Credentials: ``--username`` with SKYPORT_PASSWORD, else docker's config.json
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, ``auths.<host>.auth``, the
base64 of ``user:password``), else anonymous. A 401 with a Bearer challenge sends us to
its realm for a token of the challenge's scope (token spec: GET with Basic
credentials); a Basic challenge gets the credentials themselves.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import urllib3

_REFERENCE = re.compile(
    r"^(?P<host>[^/]+)/(?P<name>[a-z0-9._/-]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$"
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class RegistryClientError(Exception):
    """A registry answer the command cannot go on from; the message says what."""


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


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for ``host`` from docker's config.json, if it has them."""
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return (user, password) if user else None
    return None


class RegistryClient:
    def __init__(
        self,
        host: str,
        name: str,
        *,
        credentials: tuple[str, str] | None = None,
        insecure: bool = False,
        connections: int = 16,
    ) -> None:
        self.host = host
        self.name = name
        self.scheme = "http" if insecure or is_loopback(host) else "https"
        self._credentials = credentials
        self.http = urllib3.PoolManager(maxsize=connections, retries=False, timeout=urllib3.Timeout(30, 300))
        self._authorization: str | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

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
        document = json.loads(answer.data)
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
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "bearer":
            params = dict(_CHALLENGE_PARAM.findall(rest))
            params["scope"] = f"repository:{self.name}:{actions}"
            challenge = "Bearer " + ",".join(f'{key}="{value}"' for key, value in params.items())
        if not self._answer(challenge):
            raise RegistryClientError("the registry wants credentials: docker login, or --username")

    @staticmethod
    def fail(response: urllib3.BaseHTTPResponse, what: str) -> RegistryClientError:
        text = response.data[:500].decode(errors="replace")
        hint = ""
        if response.status == 401:
            hint = " (credentials: docker login, or --username with SKYPORT_PASSWORD)"
        elif response.status == 403:
            hint = " (these credentials may not push to this repository)"
        return RegistryClientError(f"{what}: HTTP {response.status}: {text}{hint}")
