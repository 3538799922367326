"""Web origins (RFC 6454), sans-I/O: what the ``Origin`` header names and what the
``cors_allowed_origins`` setting allows."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

#: The port of an origin that names none (RFC 6454 §4: the scheme's default port).
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: ASGI gives a WebSocket request's scheme as ws/wss; the page that opened it, whose origin the
#: browser sends, is http/https.
PAGE_SCHEMES = {"ws": "http", "wss": "https"}
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
