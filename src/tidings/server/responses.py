"""Small ASGI answers shared by the endpoints: plain HTTP responses, refused upgrades, origin checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from tidings.api.request import Headers
from tidings.protocol.origin import PAGE_SCHEMES, Origin, parse_allowed_origins, parse_origin
from tidings.protocol.websocket import POLICY_VIOLATION

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


def request_origin(scope: Scope, headers: Headers) -> Origin | None:
    """The origin the request was made to: its scheme (a WebSocket's as http/https) and ``Host``."""
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if not host:
        return None
    return parse_origin(f"{PAGE_SCHEMES.get(scheme, scheme)}://{host}")


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
