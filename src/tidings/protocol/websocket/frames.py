"""RFC 6455 WebSocket frames, server side, sans-I/O: the close codes, server frames, client frames.

The ``*_frame`` functions build unmasked server frames (§5.2, §5.6, §5.5), and a :class:`Parser` takes
the client's bytes as they come and returns whole messages and control frames (§5.4 fragmentation,
§5.5 control frames, §7 closing). Every way a client can break the protocol raises
:class:`WebSocketError` with the close code to answer it with.

No extension is negotiated (no permessage-deflate), so the RSV bits must be zero.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from tidings.errors import ProtocolError


def _first_apply_mask(payload: bytes, mask: bytes) -> bytes:
    """websockets' C helper (a dependency of uvicorn's stock protocols), imported on the first frame
    to unmask rather than with this module: the websockets package loads much (threading among it)
    that a sans-I/O module does not need. Pure Python if it is missing."""
    global _c_apply_mask
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover
        _c_apply_mask = None
        return unmask(payload, mask)
    _c_apply_mask = apply_mask
    return apply_mask(payload, mask)


_c_apply_mask: Callable[[bytes, bytes], bytes] | None = _first_apply_mask

# Opcodes, RFC 6455 §5.2.
CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

# Close codes, RFC 6455 §7.4.1: the one place tidings defines them (plain ints, as ASGI carries them).
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
NO_STATUS = 1005
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012

_MAX_CONTROL = 125  # §5.5: control frame payloads
_DATA_OPCODES = (TEXT, BINARY)  # of a message's first frame; built once, not at each frame
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


class WebSocketError(ProtocolError):
    """The client broke the protocol; close the connection with ``code`` (RFC 6455 §7.4.1)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- server frames (§5.2; a server never masks, §5.1) ---------------------------------------------------


def frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented server frame (FIN set)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 0x10000:
        return _PACK_16(first, 126, length) + payload
    return _PACK_64(first, 127, length) + payload


def text_frame(text: str) -> bytes:
    return frame(TEXT, text.encode())


def binary_frame(data: bytes) -> bytes:
    return frame(BINARY, data)


def close_frame(code: int | None = NORMAL_CLOSURE, reason: str = "") -> bytes:
    """A close frame (§5.5.1); ``code=None`` sends none (the peer then sees 1005). The reason is cut
    to fit the 125-byte control frame limit."""
    if code is None:
        return frame(CLOSE, b"")
    encoded = reason.encode()[: _MAX_CONTROL - 2]
    # Cutting may split a multi-byte character: drop the broken tail.
    encoded = encoded.decode("utf-8", "ignore").encode()
    return frame(CLOSE, struct.pack("!H", code) + encoded)


def pong_frame(payload: bytes) -> bytes:
    return frame(PONG, payload)


# -- client frames -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(slots=True)
class Ping:
    payload: bytes


@dataclass(slots=True)
class Pong:
    payload: bytes


@dataclass(slots=True)
class Close:
    """The client's close frame; ``code`` is 1005 when it carried none (§7.1.5)."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (§7.4.1, §7.4.2 and the IANA registry)."""
    if 3000 <= code <= 4999:
        return True
    return 1000 <= code <= 1014 and code not in (1004, 1005, 1006)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking key (§5.3)."""
    if _c_apply_mask is not None:
        return _c_apply_mask(payload, mask)  # bytes, whatever buffer it is given
    length = len(payload)
    if not length:
        return b""
    repeated = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(length, "little")


class Parser:
    """Client frames in, events out. ``max_size`` bounds one message (all its fragments), in bytes.

    After a :class:`WebSocketError` or a :class:`Close` the parser takes no more data (§5.5.1: nothing
    follows a close frame). ``control_frames`` counts the pings and pongs parsed since its owner last
    set it to 0: a read without any costs the owner one check, not a look at each event.
    """

    __slots__ = (
        "_buffer",
        "_fragments",
        "_fragments_size",
        "_needed",
        "_opcode",
        "closed",
        "control_frames",
        "max_size",
    )

    def __init__(self, max_size: int | None = None) -> None:
        self.max_size = max_size
        self.closed = False
        self.control_frames = 0
        # The start of a frame not yet whole, and how long it must grow before it can be parsed further
        # (its whole header, or its whole payload). It is appended to until then, not parsed and copied
        # again at each read: a frame trickling in many small reads costs its size, not size x reads.
        self._buffer: bytes | bytearray = b""  # b"" (shared) when empty, a bytearray while it holds a frame
        self._needed = 0
        self._opcode: int | None = None  # of the fragmented message under way
        self._fragments: list[bytes] = []
        self._fragments_size = 0

    def receive(self, data: bytes) -> list[Event]:
        """The events that ``data`` completes (maybe none). Raises :class:`WebSocketError`."""
        if self.closed:
            return []
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []
            buffer = bytes(self._buffer)
        else:
            buffer = data
        events: list[Event] = []
        position = 0
        end = len(buffer)
        try:
            while True:
                needed = position + 2
                if end < needed:
                    break
                first = buffer[position]
                second = buffer[position + 1]
                length = second & 0x7F
                start = needed
                if length == 126:
                    needed = start + 2
                    if end < needed:
                        break
                    length = int.from_bytes(buffer[start:needed], "big")
                    start = needed
                elif length == 127:
                    needed = start + 8
                    if end < needed:
                        break
                    length = int.from_bytes(buffer[start:needed], "big")
                    if length >> 63:
                        raise WebSocketError(PROTOCOL_ERROR, "frame length with the high bit set")
                    start = needed
                self._check_header(first, second, length)
                needed = start + 4 + length
                if end < needed:
                    break
                mask = buffer[start : start + 4]
                payload = unmask(buffer[start + 4 : needed], mask)
                position = needed
                event = self._frame(first & 0x80, first & 0x0F, payload)
                if event is not None:
                    events.append(event)
                    if isinstance(event, Close):
                        self.closed = True
                        self._buffer = b""
                        return events
        except WebSocketError:
            self.closed = True
            self._buffer = b""
            raise
        if position < end:
            self._buffer = bytearray(buffer[position:])
            self._needed = needed - position
        else:
            self._buffer = b""
        return events

    def _check_header(self, first: int, second: int, length: int) -> None:
        """Everything the 2-14 header bytes tell before the payload is in (§5.2)."""
        if first & 0x70:
            raise WebSocketError(PROTOCOL_ERROR, "reserved bits set")
        if not second & 0x80:
            raise WebSocketError(PROTOCOL_ERROR, "unmasked client frame")  # §5.1
        opcode = first & 0x0F
        if opcode >= 0x8:
            if opcode not in (CLOSE, PING, PONG):
                raise WebSocketError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if not first & 0x80:
                raise WebSocketError(PROTOCOL_ERROR, "fragmented control frame")  # §5.5
            if length > _MAX_CONTROL:
                raise WebSocketError(PROTOCOL_ERROR, "control frame too long")
            return
        if opcode > BINARY:  # not CONTINUATION (0), TEXT (1) or BINARY (2)
            raise WebSocketError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if self.max_size is not None and self._fragments_size + length > self.max_size:
            raise WebSocketError(MESSAGE_TOO_BIG, "message too big")

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode in _DATA_OPCODES:
            if self._opcode is not None:
                raise WebSocketError(PROTOCOL_ERROR, "new message inside a fragmented one")  # §5.4
            if fin:
                return Message(_text(payload) if opcode == TEXT else payload)
            self._opcode = opcode
            self._fragments = [payload]
            self._fragments_size = len(payload)
            return None
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise WebSocketError(PROTOCOL_ERROR, "continuation frame without a message")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not fin:
                return None
            data = b"".join(self._fragments)
            opcode, self._opcode, self._fragments, self._fragments_size = self._opcode, None, [], 0
            return Message(_text(data) if opcode == TEXT else data)
        if opcode == PING:
            self.control_frames += 1
            return Ping(payload)
        if opcode == PONG:
            self.control_frames += 1
            return Pong(payload)
        # CLOSE (§5.5.1): no body, or a 2-byte code and a UTF-8 reason.
        if not payload:
            return Close(NO_STATUS, "")
        if len(payload) == 1:
            raise WebSocketError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not _valid_close_code(code):
            raise WebSocketError(PROTOCOL_ERROR, f"invalid close code {code}")
        return Close(code, _text(payload[2:]))


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise WebSocketError(INVALID_DATA, "invalid UTF-8 in a text message") from None
