"""Small ASGI answers shared by the endpoints: plain HTTP responses, refused upgrades, origin checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from tidings.server.request import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TEXT = b"text/plain; charset=UTF-8"
JSON = b"application/json"
# WebSocket close code (RFC 6455 §7.4.1) for a refused upgrade where the server cannot answer HTTP.
POLICY_VIOLATION = 1008


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
    if "websocket.http.response" not in scope.get("extensions", {}):
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


def allowed_origin(headers: Headers, allowed: str | Sequence[str] | None) -> tuple[bool, str | None]:
    """Whether a request's ``Origin`` may connect (see ``Settings.cors_allowed_origins``); the origin."""
    origin = headers.get("origin")
    if origin is None:
        return True, None
    if allowed == "*":
        return True, origin
    if allowed is None:
        return urlsplit(origin).netloc == headers.get("host"), origin
    return origin in allowed, origin
