"""Socket.IO protocol v5, sans I/O: packets (:mod:`.packets`) and the reassembly of binary ones
(:mod:`.decoder`).

Spec: https://socket.io/docs/v4/socket-io-protocol/ (sections cited as "SIO §...").
"""

from tidings.protocol.socketio.decoder import Decoder
from tidings.protocol.socketio.packets import (
    MAX_DEPTH,
    RESERVED_EVENTS,
    Packet,
    PacketType,
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
    "Decoder",
    "Packet",
    "PacketType",
    "decode_text",
    "deconstruct",
    "dumps",
    "encode",
    "loads",
    "reconstruct",
]
