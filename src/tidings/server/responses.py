"""Small ASGI answers shared by the endpoints: plain HTTP responses, refused upgrades, origin checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from tidings.protocol.websocket import POLICY_VIOLATION
from tidings.server.request import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TEXT = b"text/plain; charset=UTF-8"
JSON = b"application/json"


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = TEXT,
    headers: list[tuple[bytes, bytes]] | None = None,
    cache_control: bytes = b"no-store",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", cache_control),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def reject_websocket(
    scope: Scope, send: Send, status: int, body: bytes, content_type: bytes = JSON
) -> None:
    """Refuse an upgrade with an HTTP status and body (ASGI "websocket.http.response" extension).

    Without the extension the server answers 403 with no body.
    """
    if "websocket.http.response" not in scope.get("extensions", {}):  # close with 1008 (RFC 6455 §7.4.1)
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


#: The port of an origin that names none (RFC 6454 §4: the scheme's default port).
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: ASGI gives a WebSocket request's scheme as ws/wss; the page that opened it, whose origin the
#: browser sends, is http/https.
_PAGE_SCHEMES = {"ws": "http", "wss": "https"}
#: Characters an origin's host and port never hold: a path, query, fragment or user info is no origin.
_NOT_IN_ORIGIN = frozenset("/?#@\\") | frozenset(" \t\r\n")

Origin = tuple[str, str, int | None]


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as ``(scheme, host, port)``: lowercased, the scheme's default port
    filled in, so that equal origins compare equal; None if ``text`` is no such origin (``null``, a
    path, user info, a bad port)."""
    scheme, separator, rest = text.partition("://")
    if not separator or not scheme or not rest or not _NOT_IN_ORIGIN.isdisjoint(rest):
        return None
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != scheme.lower() or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS.get(parts.scheme)


def request_origin(scope: Scope, headers: Headers) -> Origin | None:
    """The origin the request was made to: its scheme (a WebSocket's as http/https) and ``Host``."""
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if not host:
        return None
    return parse_origin(f"{_PAGE_SCHEMES.get(scheme, scheme)}://{host}")


def parse_allowed_origins(allowed: str | Sequence[str] | None) -> frozenset[Origin] | None:
    """``Settings.cors_allowed_origins`` other than ``"*"`` and ``None``, parsed; ValueError for an
    entry that is no origin."""
    if allowed is None or allowed == "*":
        return None
    entries = [allowed] if isinstance(allowed, str) else list(allowed)
    parsed = set()
    for entry in entries:
        origin = parse_origin(entry) if isinstance(entry, str) else None
        if origin is None:
            why = " ('null' is what sandboxed frames and file: pages send)" if entry == "null" else ""
            raise ValueError(f"cors_allowed_origins: {entry!r} is not an origin (scheme://host[:port]){why}")
        parsed.add(origin)
    return frozenset(parsed)


class OriginCheck:
    """Which browser origins may connect (``Settings.cors_allowed_origins``), and the CORS headers the
    allowed ones get (``Settings.cors_credentials``)."""

    def __init__(self, allowed: str | Sequence[str] | None, credentials: bool | None) -> None:
        self.any = allowed == "*"
        self.listed = parse_allowed_origins(allowed)
        self.credentials = credentials if credentials is not None else not self.any

    def allows(self, scope: Scope, headers: Headers) -> tuple[bool, str | None]:
        """Whether the request may connect; its ``Origin``, if it sent one.

        A request without ``Origin`` is no browser's cross-origin request: allowed. ``Origin: null``
        (sandboxed frames, ``file:`` pages, cross-origin redirects) never is.
        """
        origin = headers.get("origin")
        if origin is None:
            return True, None
        parsed = parse_origin(origin)
        if parsed is None:
            return False, origin
        if self.any:
            return True, origin
        if self.listed is not None:
            return parsed in self.listed, origin
        return parsed == request_origin(scope, headers), origin

    def headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to an allowed request from ``origin``."""
        if origin is None:
            return []
        if self.any and not self.credentials:
            return [(b"access-control-allow-origin", b"*")]
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers
