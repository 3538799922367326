"""Engine.IO protocol v4, sans-I/O: the packet codec (:mod:`.packets`) and the session (:mod:`.session`).

Spec: https://socket.io/docs/v4/engine-io-protocol/ (sections cited as "EIO §...").
"""

from tidings.protocol.engineio.packets import (
    CLOSE,
    NOOP,
    PING,
    PONG,
    PONG_PROBE,
    PROBE,
    PROTOCOL_VERSION,
    RECORD_SEPARATOR,
    TRANSPORTS,
    UPGRADE,
    ErrorCode,
    Packet,
    PacketType,
    RequestError,
    RequestInfo,
    decode_packet,
    decode_payload,
    encode_payload,
    message,
    open_packet,
    parse_query,
)

__all__ = [
    "CLOSE",
    "NOOP",
    "PING",
    "PONG",
    "PONG_PROBE",
    "PROBE",
    "PROTOCOL_VERSION",
    "RECORD_SEPARATOR",
    "TRANSPORTS",
    "UPGRADE",
    "ErrorCode",
    "Packet",
    "PacketType",
    "RequestError",
    "RequestInfo",
    "decode_packet",
    "decode_payload",
    "encode_payload",
    "message",
    "open_packet",
    "parse_query",
]
