"""Which upstream redirects the pull-through cache follows (the fill) or hands to a client
(a blob miss): skyport.pull_through.upstream.checked_redirect, case by case. Over HTTP the
tests' upstreams all listen on 127.0.0.1 (internal, so their redirects to internal storage
are followed: tests/pull_through); a registry on the internet cannot be stood up here, so
its cases are checked on the function itself."""

from __future__ import annotations

import pytest
from skyport.pull_through.upstream import UpstreamDown, checked_redirect

PUBLIC = "https://registry-1.docker.io"
PRIVATE = "http://10.0.4.7:5000"
LOOPBACK = "http://127.0.0.1:5091"


@pytest.mark.parametrize(
    ("upstream", "url"),
    [
        (PUBLIC, "https://production.cloudflare.docker.com/registry-v2/blobs/sha256/ab/data?verify=1"),
        (PUBLIC, "https://8.8.8.8/blob"),
        (PRIVATE, "http://10.0.4.8:9000/bucket/blob"),  # a private registry's own storage
        (PRIVATE, "http://127.0.0.1:9000/blob"),
        (LOOPBACK, "http://127.0.0.1:5092/bucket/blob?X-Amz-Signature=00"),
        ("http://localhost:5000", "http://[::1]:9000/blob"),
    ],
)
def test_followed(upstream, url):
    assert checked_redirect(url, upstream).hostname


@pytest.mark.parametrize(
    ("upstream", "url"),
    [
        # From the internet into the function's own network or machine: never.
        (PUBLIC, "http://10.1.2.3/blob"),
        (PUBLIC, "http://192.168.0.10/blob"),
        (PUBLIC, "http://172.16.5.5/blob"),
        (PUBLIC, "http://127.0.0.1:2375/containers/json"),
        (PUBLIC, "http://[::1]/blob"),
        (PUBLIC, "http://[fd00::1]/blob"),
        (PUBLIC, "http://[::ffff:127.0.0.1]/blob"),
        (PUBLIC, "http://localhost:8080/blob"),
        (PUBLIC, "http://metadata.localhost/blob"),
        (PUBLIC, "http://0.0.0.0/blob"),
        # The same addresses as the system's resolver reads other spellings of them.
        (PUBLIC, "http://2130706433:2375/containers/json"),
        (PUBLIC, "http://127.1/blob"),
        (PUBLIC, "http://0x7f.0.0.1/blob"),
        (PUBLIC, "http://0177.0.0.1/blob"),
        (PUBLIC, "http://10.1.2.3./blob"),
        (LOOPBACK, "http://2852039166/latest/meta-data/"),
        (PRIVATE, "http://169.254.43518/latest/meta-data/"),
        (PRIVATE, "http://[fd00:ec2::254]/latest/meta-data/"),
        # Link-local (cloud metadata, container credentials): from anywhere, never.
        (PRIVATE, "http://169.254.169.254/latest/meta-data/"),
        (LOOPBACK, "http://169.254.170.2/v2/credentials"),
        (PUBLIC, "http://[fe80::1]/blob"),
        # Not a URL a client or the fill may be sent to.
        (PUBLIC, "file:///etc/passwd"),
        (PUBLIC, "https://user:secret@storage.example/blob"),
        (PUBLIC, "https://storage.example/a b"),
        (PUBLIC, "https://storage.example/\u0661"),
        (PUBLIC, "https://storage.example/" + "a" * 17000),
        (PUBLIC, "https:///no-host"),
    ],
)
def test_refused(upstream, url):
    with pytest.raises(UpstreamDown, match="not followed"):
        checked_redirect(url, upstream)


def test_an_upstream_named_by_dns_is_judged_where_its_name_resolves():
    """An admin's registry inside the VPC by name (``registry.corp.example``) is internal
    when its name resolves only to internal addresses (Upstreams.internal_allowed, the same
    judgement the connections make): its storage on a private address is followed then,
    and refused when the name resolves to the internet. Link-local stays refused."""
    corp = "https://registry.corp.example"
    storage = "http://10.0.4.8:9000/bucket/blob"
    assert checked_redirect(storage, corp, upstream_internal=True).hostname == "10.0.4.8"
    for where in (False, None):  # on the internet; or not resolved: judged by its spelling
        with pytest.raises(UpstreamDown, match="not followed"):
            checked_redirect(storage, corp, upstream_internal=where)
    with pytest.raises(UpstreamDown, match="not followed"):
        checked_redirect("http://169.254.169.254/latest/meta-data/", corp, upstream_internal=True)
