"""The WebSocket opening handshake, server side (RFC 6455 §4.2), sans-I/O.

:func:`parse_request` reads an upgrade request head, :func:`check_request` validates it (§4.2.1) and
gives the ``Sec-WebSocket-Accept`` value, :func:`accept_response` builds the ``101`` answer (§4.2.2)
and :func:`http_response` a plain HTTP answer that refuses the upgrade.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from tidings.errors import ProtocolError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class HandshakeError(ProtocolError):
    """The upgrade request is not a valid WebSocket opening handshake; answer ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    """An upgrade request head: ``target`` is the raw request target (path and query)."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]  # names lower-cased, in order

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: bytes) -> list[bytes]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        found: list[bytes] = []
        for key, value in self.headers:
            if key == name:
                found.extend(token.strip().lower() for token in value.split(b","))
        return found


def parse_request(head: bytes) -> Request:
    """The request line and headers of ``head`` (everything up to the blank line).

    Raises :class:`HandshakeError` (400) if it is not an HTTP/1.1 request.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        raise HandshakeError(400, "not an HTTP/1.1 request line")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise HandshakeError(400, "malformed header line")
        headers.append(_shared(name.lower(), value.strip()))
    return Request(parts[0].decode("latin-1"), parts[1].decode("latin-1"), headers)


# Header names, and the values of headers that repeat from one client to the next, are kept and
# shared: thousands of idle connections then hold one `b"upgrade"`, one `b"websocket"`, and so on.
_SHARED_VALUES = frozenset(
    (
        *(b"upgrade", b"connection", b"sec-websocket-version", b"host", b"origin", b"user-agent"),
        *(b"pragma", b"cache-control", b"accept-encoding", b"accept-language", b"sec-websocket-extensions"),
    )
)
_shared_names: dict[bytes, bytes] = {}
_shared_headers: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_MAX_SHARED = 512


def _shared(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name in _SHARED_VALUES:
        header = (name, value)
        found = _shared_headers.get(header)
        if found is not None:
            return found
        if len(_shared_headers) < _MAX_SHARED:
            _shared_headers[header] = header
        return header
    found_name = _shared_names.get(name)
    if found_name is None:
        if len(_shared_names) >= _MAX_SHARED:
            return name, value
        found_name = _shared_names[name] = name
    return found_name, value


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (§4.2.2, step 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def check_request(request: Request) -> bytes:
    """Validate the opening handshake (§4.2.1); the ``Sec-WebSocket-Accept`` value to answer with.

    Raises :class:`HandshakeError`: 400 for a malformed request, 426 for another protocol version
    (the answer must then carry ``Sec-WebSocket-Version: 13``, §4.4).
    """
    if request.method != "GET":
        raise HandshakeError(400, "the opening handshake must be a GET")
    if b"websocket" not in request.tokens(b"upgrade"):
        raise HandshakeError(400, "missing Upgrade: websocket")
    if b"upgrade" not in request.tokens(b"connection"):
        raise HandshakeError(400, "missing Connection: Upgrade")
    if request.get(b"sec-websocket-version") != b"13":
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version")
    key = request.get(b"sec-websocket-key")
    try:
        valid = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise HandshakeError(400, "bad Sec-WebSocket-Key")
    assert key is not None
    return accept_key(key)


def accept_response(accept: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The ``101 Switching Protocols`` answer, with extra ``headers`` (already encoded)."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        b"Sec-WebSocket-Accept: " + accept + b"\r\n",
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


def http_response(status: int, phrase: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A plain HTTP/1.1 answer that refuses the upgrade; the connection closes after it."""
    names = {name.lower() for name, _ in headers}
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1"))]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    if b"content-length" not in names:
        lines.append(b"content-length: %d\r\n" % len(body))
    if b"connection" not in names:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
