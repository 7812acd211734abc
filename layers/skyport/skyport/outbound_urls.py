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
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

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
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        address = None
    if address is not None and address.is_link_local:
        raise UrlRefused(f"{parts.hostname} is link-local (cloud metadata endpoints live there)")
    return parts
