"""Socket.IO protocol v5, sans I/O: packets (:mod:`.packets`), the reassembly of binary ones
(:mod:`.decoder`) and the state of one client's connection (:mod:`.connection`).

Spec: https://socket.io/docs/v4/socket-io-protocol/ (sections cited as "SIO §...").
"""

from tidings.protocol.socketio.connection import (
    TRANSITIONS,
    AckCallback,
    AckReceived,
    BaseSocket,
    Connection,
    ConnectRequest,
    DisconnectRequest,
    Received,
    SocketState,
    Step,
    ack,
    connect_error,
    messages,
    namespace_disconnect,
)
from tidings.protocol.socketio.decoder import Decoder
from tidings.protocol.socketio.packets import (
    MAX_DEPTH,
    RESERVED_EVENTS,
    Packet,
    PacketType,
    check_event,
    decode_text,
    deconstruct,
    dumps,
    encode,
    loads,
    reconstruct,
)

__all__ = [
    "MAX_DEPTH",
    "RESERVED_EVENTS",
    "TRANSITIONS",
    "AckCallback",
    "AckReceived",
    "BaseSocket",
    "ConnectRequest",
    "Connection",
    "Decoder",
    "DisconnectRequest",
    "Packet",
    "PacketType",
    "Received",
    "SocketState",
    "Step",
    "ack",
    "check_event",
    "connect_error",
    "decode_text",
    "deconstruct",
    "dumps",
    "encode",
    "loads",
    "messages",
    "namespace_disconnect",
    "reconstruct",
]
