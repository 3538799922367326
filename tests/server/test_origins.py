"""The origin check and CORS headers, sans I/O: which ``Origin`` may connect to which server.

tests/hostile/test_cors.py sends the same cases to a real `tidings run` over both transports.
"""

from __future__ import annotations

from typing import Any

import pytest

import tidings
from tidings.api.request import Headers
from tidings.protocol.origin import parse_origin
from tidings.server.responses import OriginCheck


def request(scheme: str, host: str | None, origin: str | None) -> tuple[dict[str, Any], Headers]:
    raw = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        raw.append((b"origin", origin.encode()))
    return {"scheme": scheme, "headers": raw}, Headers(raw)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("http://chat.example.org", ("http", "chat.example.org", 80)),
        ("HTTPS://Chat.Example.ORG:443", ("https", "chat.example.org", 443)),
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", ("http", "::1", 8000)),
        ("capacitor://localhost", ("capacitor", "localhost", None)),  # no default port: none
        ("javascript://chat.example.org:80", ("javascript", "chat.example.org", 80)),
        ("null", None),
        ("", None),
        ("chat.example.org", None),
        ("http://chat.example.org/", None),
        ("http://chat.example.org/path", None),
        ("http://chat.example.org?x", None),
        ("http://chat.example.org#", None),
        ("http://user@chat.example.org", None),
        ("http://chat.example.org:99999", None),
        ("http://chat.example.org:+80", None),
        ("http://chat.exa\tmple.org", None),
        ("http://", None),
    ],
)
def test_an_origin_is_a_scheme_a_host_and_a_port(text: str, parsed: Any) -> None:
    assert parse_origin(text) == parsed


SAME_ORIGIN = [
    # (request scheme, Host, Origin, allowed)
    ("http", "chat.example.org", "http://chat.example.org", True),
    ("http", "chat.example.org", "http://chat.example.org:80", True),  # the default port, named
    ("http", "chat.example.org:80", "http://chat.example.org", True),
    ("https", "chat.example.org", "https://chat.example.org:443", True),
    ("http", "Chat.Example.org", "http://chat.example.org", True),  # hosts are case-insensitive
    ("ws", "127.0.0.1:8000", "http://127.0.0.1:8000", True),  # a WebSocket from an http page
    ("wss", "chat.example.org", "https://chat.example.org", True),
    ("http", "chat.example.org", "https://chat.example.org", False),  # another scheme
    ("https", "chat.example.org", "http://chat.example.org", False),
    ("ws", "chat.example.org", "https://chat.example.org", False),
    ("http", "127.0.0.1:8000", "javascript://127.0.0.1:8000", False),
    ("http", "127.0.0.1:8000", "http://127.0.0.1:8001", False),  # another port
    ("http", "127.0.0.1:8000", "http://127.0.0.1", False),
    ("http", "chat.example.org", "http://chat.example.org.evil.example", False),
    ("http", "chat.example.org", "null", False),
    ("http", None, "http://chat.example.org", False),  # no Host: nothing to be the same as
    ("http", "chat.example.org/x", "http://chat.example.org", False),  # a Host that is no host
]


@pytest.mark.parametrize(("scheme", "host", "origin", "allowed"), SAME_ORIGIN)
def test_same_origin_compares_scheme_host_and_port(
    scheme: str, host: str | None, origin: str, allowed: bool
) -> None:
    assert OriginCheck(None, None).allows(*request(scheme, host, origin)) == (allowed, origin)


def test_a_request_without_origin_is_allowed_and_gets_no_cors_headers() -> None:
    for check in (OriginCheck(None, None), OriginCheck("*", None), OriginCheck(["http://a.example"], None)):
        assert check.allows(*request("http", "chat.example.org", None)) == (True, None)
        assert check.headers(None) == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.org",
        "HTTPS://CHAT.example.org:443",
        "http://localhost:3000",
        "capacitor://localhost",
    ],
)
def test_listed_origins_are_compared_normalized(origin: str) -> None:
    check = OriginCheck(
        ["https://chat.example.org:443", "http://LOCALHOST:3000", "capacitor://localhost"], None
    )
    assert check.allows(*request("http", "elsewhere.example", origin)) == (True, origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://chat.example.org",
        "https://chat.example.org:8443",
        "https://chat.example.or",
        "null",
        "javascript://chat.example.org:443",
    ],
)
def test_origins_not_listed_are_refused(origin: str) -> None:
    check = OriginCheck(["https://chat.example.org"], None)
    assert check.allows(*request("https", "chat.example.org", origin)) == (False, origin)


def test_one_origin_as_a_string_is_that_origin_not_its_substrings() -> None:
    check = OriginCheck("https://chat.example.org", None)
    assert check.allows(*request("https", "x", "https://chat.example.org"))[0]
    assert not check.allows(*request("https", "x", "https://chat.example.or"))[0]


def test_star_allows_any_origin_but_null_without_credentials() -> None:
    check = OriginCheck("*", None)
    assert check.allows(*request("http", "chat.example.org", "https://evil.example")) == (
        True,
        "https://evil.example",
    )
    assert check.allows(*request("http", "chat.example.org", "null"))[0] is False
    assert check.headers("https://evil.example") == [(b"access-control-allow-origin", b"*")]


def test_star_with_credentials_asked_for_reflects_the_origin() -> None:
    check = OriginCheck("*", True)
    assert check.allows(*request("http", "chat.example.org", "null"))[0] is False
    assert check.headers("https://evil.example") == [
        (b"access-control-allow-origin", b"https://evil.example"),
        (b"vary", b"Origin"),
        (b"access-control-allow-credentials", b"true"),
    ]


@pytest.mark.parametrize(("credentials", "sent"), [(None, True), (True, True), (False, False)])
def test_listed_and_same_origins_get_credentials_unless_turned_off(
    credentials: bool | None, sent: bool
) -> None:
    for allowed in (None, ["https://chat.example.org"]):
        headers = OriginCheck(allowed, credentials).headers("https://chat.example.org")
        assert headers[:2] == [
            (b"access-control-allow-origin", b"https://chat.example.org"),
            (b"vary", b"Origin"),
        ]
        assert ((b"access-control-allow-credentials", b"true") in headers) is sent


@pytest.mark.parametrize("entry", ["null", "chat.example.org", "https://chat.example.org/", "https://a@b"])
def test_a_listed_entry_that_is_no_origin_is_refused_at_once(entry: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        tidings.Settings(cors_allowed_origins=["https://chat.example.org", entry])
