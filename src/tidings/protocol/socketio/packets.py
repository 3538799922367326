"""Socket.IO protocol v5 packets: their text form, binary attachments and what each type may carry.

Spec: https://socket.io/docs/v4/socket-io-protocol/ (sections cited as "SIO §...").

A packet is written ``<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`` (SIO §"Packet
encoding"). Binary values inside the data are replaced by ``{"_placeholder": true, "num": n}`` and sent
as separate binary Engine.IO messages right after the text packet.
"""

from __future__ import annotations

import enum
import json
import reprlib
from dataclasses import dataclass
from typing import Any

import orjson

from tidings.errors import ProtocolError


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


#: The packet types by the digit that stands for them: a dict look-up per packet instead of the
#: enum's call by value (~1 µs, Python code).
_BY_DIGIT = {str(int(packet_type)): packet_type for packet_type in PacketType}


#: Event names with a meaning of their own on either side; a client may not emit them (SIO §"EVENT").
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
BINARY_TYPES = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
# Read once for _check_payload, which runs once per packet: on Python 3.11, reading an Enum member off
# its class costs ~70 ns.
_EVENT_TYPES = (PacketType.EVENT, PacketType.BINARY_EVENT)
_MAX_ACK_ID_DIGITS = 15  # more than any client counts to; keeps int() cheap
_DIGITS = "0123456789"  # of an ack id: ASCII only, as int() would take other digits too
_MAX_NAMESPACE_LENGTH = 256
_BINARY = (bytes, bytearray, memoryview)

#: How deeply a peer's JSON may nest (``[[1]]`` is 2 levels). orjson encodes at most
#: ``_ENCODABLE_DEPTH`` levels, and what a client sends is often sent on inside a few more (a
#: ``message`` event's arguments, the app's own object around it, a broker's envelope): half of that
#: leaves every such wrapping room, and is deeper than any document an application means to send.
MAX_DEPTH = 128
_ENCODABLE_DEPTH = 254
#: orjson keeps integers in [-2**63, 2**64) and turns others into floats, silently.
_INTEGERS = range(-(2**63), 2**64)
#: Character classes for the cheap pre-checks of :func:`_check_faithful`: digits become ``0`` and
#: ``{`` becomes ``[``; nothing else becomes either.
_SHAPES = bytes.maketrans(b"123456789{", b"000000000[")
#: An integer literal outside ``_INTEGERS`` has at least 19 digits.
_LONG_DIGIT_RUN = b"0" * 19


@dataclass(slots=True)
class Packet:
    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def check_event(event: Any) -> str | None:
    """Why ``event`` cannot name an EVENT the server sends, or None: it must be a non-empty string and
    no reserved name (the official clients take an EVENT named ``disconnect`` ... for a broken packet
    and close the connection: SIO §"EVENT")."""
    if not isinstance(event, str) or not event:
        return f"an event name is a non-empty string, not {reprlib.repr(event)}"
    if event in RESERVED_EVENTS:
        return f"{event!r} is a reserved event name"
    return None


def dumps(data: Any) -> str:
    """JSON for the wire. Raises ``TypeError`` for values JSON cannot hold (and for bytes)."""
    return orjson.dumps(data).decode()


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet: the text part first, then its binary attachments, if any.

    Raises ``TypeError`` for data JSON cannot hold: sets, objects, data nested too deeply, and bytes
    anywhere but in an EVENT or ACK.

    JSON encoding is tried first as is; only data that holds bytes (which the JSON encoder refuses)
    pays for the walk that pulls attachments out.
    """
    packet_type = packet.type
    attachments: list[bytes] = []
    if packet.data is None:
        payload = ""
    else:
        try:
            payload = dumps(packet.data)
        except TypeError:
            if packet_type not in (PacketType.EVENT, PacketType.ACK):
                raise  # only events and acks carry binary attachments (SIO §"Packet types")
            try:
                payload = dumps(deconstruct(packet.data, attachments))
            except RecursionError:
                raise TypeError("data nested too deeply to encode") from None
            if attachments:
                packet_type = PacketType(packet_type + 3)  # EVENT→BINARY_EVENT, ACK→BINARY_ACK
    head = str(int(packet_type))
    if attachments:
        head += f"{len(attachments)}-"
    if packet.namespace != "/":
        head += packet.namespace + ","
    if packet.id is not None:
        head += str(packet.id)
    return [head + payload, *attachments]


def deconstruct(data: Any, attachments: list[bytes]) -> Any:
    """``data`` with each binary value replaced by a placeholder; the values go to ``attachments``.

    SIO §"Packet encoding": ``{"_placeholder": true, "num": n}`` stands for ``attachments[n]``.
    Raises ``RecursionError`` for data nested deeper than the stack allows.
    """
    if isinstance(data, _BINARY):
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(data, (list, tuple)):
        return [deconstruct(item, attachments) for item in data]
    if isinstance(data, dict):
        return {key: deconstruct(value, attachments) for key, value in data.items()}
    return data


def reconstruct(data: list[Any], attachments: list[bytes]) -> list[Any]:
    """Put the attachments in place of their placeholders, in the freshly decoded ``data``.

    The inverse of :func:`deconstruct`; ``data`` is changed in place and returned. Each attachment
    must be referenced by exactly one placeholder, as every encoder makes them: else one attachment
    could stand for thousands of values, each sent on as bytes of its own. Raises
    :class:`ProtocolError` for a placeholder with no attachment, a second one for the same
    attachment, or an attachment with none. Iterative, so that deeply nested data cannot exhaust the
    stack.

    The order of the placeholders is not checked: encoders number attachments in the order they
    walk their own maps, which need not be the order the JSON text lists the keys in (Swift's
    dictionaries, for one).
    """
    placed = [False] * len(attachments)
    stack: list[list[Any] | dict[str, Any]] = [data]
    while stack:
        node = stack.pop()
        items = enumerate(node) if isinstance(node, list) else node.items()
        for key, value in items:
            if isinstance(value, dict):
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if type(num) is not int or not 0 <= num < len(attachments):
                        raise ProtocolError("invalid attachment placeholder")
                    if placed[num]:
                        raise ProtocolError("attachment placeholder used twice")
                    placed[num] = True
                    node[key] = attachments[num]  # type: ignore[index]
                else:
                    stack.append(value)
            elif isinstance(value, list):
                stack.append(value)
    if not all(placed):
        raise ProtocolError("attachment without a placeholder")
    return data


def decode_text(text: str) -> tuple[Packet, int]:
    """Parse the text part of a packet; returns it with the number of attachments still to come."""
    if not text:
        raise ProtocolError("empty packet")
    packet_type = _BY_DIGIT.get(text[0])
    if packet_type is None:
        raise ProtocolError(f"unknown packet type {text[0]!r}")
    end = len(text)
    i = 1
    attachments = 0
    if packet_type in BINARY_TYPES:
        dash = text.find("-", i)
        count = text[i:dash]
        if dash == -1 or not (count.isascii() and count.isdigit()) or len(count) > 3:
            raise ProtocolError("illegal attachments")
        attachments = int(count)
        i = dash + 1
    namespace = "/"
    if i < end and text[i] == "/":
        comma = text.find(",", i)
        stop = end if comma == -1 else comma
        namespace = text[i:stop]
        i = stop + 1
        if len(namespace) > _MAX_NAMESPACE_LENGTH:
            raise ProtocolError("namespace too long")
    rest = text[i:]
    payload = rest.lstrip(_DIGITS)  # the JSON data after the ack id: one C call, not a loop per digit
    ack_id = None
    if len(payload) < len(rest):
        digits = rest[: len(rest) - len(payload)]
        if len(digits) > _MAX_ACK_ID_DIGITS:
            raise ProtocolError("ack id too long")
        ack_id = int(digits)
    data = loads(payload) if payload else None
    packet = Packet(packet_type, namespace, data, ack_id)
    _check_payload(packet)
    return packet, attachments


def loads(text: str) -> Any:
    """A peer's JSON, if tidings can send it on as it came; else :class:`ProtocolError`.

    Refused: what is no JSON (NaN and Infinity included), data nested deeper than
    :data:`MAX_DEPTH` (it could not be encoded again) and integers beyond 64 bits (the parser would
    turn them into approximate floats).
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid JSON payload") from None
    _check_faithful(text, data)
    return data


def _check_faithful(text: str, data: Any) -> None:
    """Depth and integers: one pass over ``text`` tells whether either can be a problem at all
    (more than ``MAX_DEPTH`` brackets, a run of 19 digits); only then is ``data``, ``text`` parsed,
    examined.
    """
    shape = text.encode().translate(_SHAPES)
    # More than MAX_DEPTH brackets take more than MAX_DEPTH bytes: most events are shorter, uncounted.
    if len(shape) > MAX_DEPTH and shape.count(b"[") > MAX_DEPTH and _too_deep(data):
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _LONG_DIGIT_RUN in shape:
        # Exact integers this time; raises for the first too big. What orjson took, the laxer
        # Python parser takes too, at a depth its recursion allows (checked above).
        json.loads(text, parse_int=_int64)


def _too_deep(data: Any) -> bool:
    """Whether ``data`` nests deeper than :data:`MAX_DEPTH`: the encoder, wrapped in the levels
    ``MAX_DEPTH`` leaves unused, answers in C what a walk in Python would take long to."""
    for _ in range(_ENCODABLE_DEPTH - MAX_DEPTH):
        data = [data]
    try:
        orjson.dumps(data)
    except orjson.JSONEncodeError:  # parsed JSON holds nothing else it could refuse
        return True
    return False


def _int64(literal: str) -> int:
    value = int(literal)  # at most ~310 digits: orjson refuses longer ones as infinite
    if value not in _INTEGERS:
        raise ProtocolError("integer beyond 64 bits")
    return value


def _check_payload(packet: Packet) -> None:
    """SIO §"Packet types": what each type may carry."""
    data = packet.data
    if packet.type in _EVENT_TYPES:  # events first: most of what a client sends
        ok = (
            isinstance(data, list)
            and len(data) > 0
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
    else:
        match packet.type:
            case PacketType.CONNECT:
                ok = data is None or isinstance(data, dict)
            case PacketType.DISCONNECT:
                ok = data is None
            case PacketType.CONNECT_ERROR:
                ok = isinstance(data, (dict, str))
            case _:  # ACK, BINARY_ACK
                ok = isinstance(data, list) and packet.id is not None
    if not ok:
        raise ProtocolError(f"invalid payload for {packet.type.name}")
