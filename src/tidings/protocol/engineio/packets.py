"""Engine.IO protocol v4: packets, HTTP long-polling payloads and the handshake.

Spec: https://socket.io/docs/v4/engine-io-protocol/ (sections cited as "EIO §...").

Outbound packets are represented as they go on a WebSocket: a ``str`` is a text packet (type digit then
data, e.g. ``"4hello"``), ``bytes`` is a binary message (EIO §"Packet encoding": binary frames carry
the message with no type prefix). Polling payloads are built from the same values, so a packet encoded
once serves both transports.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import orjson

from tidings.errors import ProtocolError

PROTOCOL_VERSION = "4"
#: EIO §"HTTP long-polling": packets of one payload are joined by the record separator.
RECORD_SEPARATOR = "\x1e"
TRANSPORTS = ("polling", "websocket")


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


#: The packet types by the digit that stands for them: a dict look-up per packet instead of the
#: enum's call by value (~1 µs, Python code).
_BY_DIGIT = {str(int(packet_type)): packet_type for packet_type in PacketType}


class ErrorCode(enum.IntEnum):
    """Handshake and request errors, with the codes and messages of the reference server."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    @property
    def message(self) -> str:
        return _ERROR_MESSAGES[self]

    def body(self) -> bytes:
        """The JSON body of the HTTP 400/403 answer, as the reference server sends it."""
        return orjson.dumps({"code": int(self), "message": self.message})


_ERROR_MESSAGES = {
    ErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    ErrorCode.UNKNOWN_SID: "Session ID unknown",
    ErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


@dataclass(frozen=True, slots=True)
class Packet:
    type: PacketType
    data: str | bytes = ""


# Pre-encoded control packets: they never change, so they are built once.
PING = "2"
PONG = "3"
CLOSE = "1"
UPGRADE = "5"
NOOP = "6"
PROBE = "probe"
PONG_PROBE = "3probe"


def message(data: str) -> str:
    """A text MESSAGE packet. Binary messages go out as the bytes themselves."""
    return "4" + data


def decode_packet(raw: str | bytes) -> Packet:
    """Decode one packet as received on a WebSocket (text or binary frame)."""
    if isinstance(raw, bytes):
        return Packet(PacketType.MESSAGE, raw)
    if not raw:
        raise ProtocolError("empty packet")
    packet_type = _BY_DIGIT.get(raw[0])
    if packet_type is None:
        raise ProtocolError(f"unknown packet type {raw[0]!r}")
    return Packet(packet_type, raw[1:])


def message_data(raw: str | bytes) -> str | bytes | None:
    """The data of ``raw``, as received on a WebSocket, if it is a MESSAGE packet (what
    :func:`decode_packet` would carry in its :class:`Packet`); None for any other packet, or for
    no packet at all, which :func:`decode_packet` then takes. Every client event passes here: it
    builds no :class:`Packet` for it."""
    if isinstance(raw, bytes):
        return raw
    return raw[1:] if raw[:1] == "4" else None


def decode_payload(body: str) -> list[Packet]:
    """Decode an HTTP long-polling request body (EIO §"HTTP long-polling", "Sending data").

    Binary packets travel base64-encoded behind a ``b`` prefix.
    """
    if not body:
        raise ProtocolError("empty payload")
    packets = []
    for part in body.split(RECORD_SEPARATOR):
        if part.startswith("b"):
            try:
                packets.append(Packet(PacketType.MESSAGE, base64.b64decode(part[1:], validate=True)))
            except ValueError:  # binascii.Error, or ValueError for non-ASCII characters
                raise ProtocolError("invalid base64 in binary packet") from None
        else:
            packets.append(decode_packet(part))
    return packets


def encode_payload(packets: Iterable[str | bytes]) -> str:
    """Join outbound packets into one long-polling response body."""
    return RECORD_SEPARATOR.join(
        p if isinstance(p, str) else "b" + base64.b64encode(p).decode("ascii") for p in packets
    )


def open_packet(
    sid: str, upgrades: list[str], ping_interval: float, ping_timeout: float, max_payload: int
) -> str:
    """The OPEN packet that ends the handshake (EIO §"Handshake"); intervals in seconds."""
    handshake = {
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": int(ping_interval * 1000),
        "pingTimeout": int(ping_timeout * 1000),
        "maxPayload": max_payload,
    }
    return "0" + orjson.dumps(handshake).decode()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the query string of an Engine.IO request says."""

    transport: str
    sid: str | None


class RequestError(ProtocolError):
    """An Engine.IO HTTP request that cannot be served; ``code`` says why."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.message)
        self.code = code


def parse_query(query_string: bytes | str) -> RequestInfo:
    """Check ``EIO``, ``transport`` and ``sid`` of a request's query string."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = first_values(query_string)
    if query.get("EIO") != PROTOCOL_VERSION:
        raise RequestError(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION)
    transport = query.get("transport")
    if transport not in TRANSPORTS:
        raise RequestError(ErrorCode.UNKNOWN_TRANSPORT)
    return RequestInfo(transport=transport, sid=query.get("sid"))


def first_values(query_string: str) -> dict[str, str]:
    """The first non-empty value of each name in a query string, as ``urllib.parse.parse_qs`` gives
    them (its first list items), without its cost: a long-polling client sends one on every request."""
    values: dict[str, str] = {}
    for pair in query_string.split("&"):
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name), unquote_plus(value)
        if value and name not in values:
            values[name] = value
    return values
