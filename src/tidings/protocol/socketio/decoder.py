"""Socket.IO v5 binary packets reassembled from the Engine.IO messages of one connection.

Spec: https://socket.io/docs/v4/socket-io-protocol/, SIO §"Packet encoding": a BINARY_EVENT or
BINARY_ACK is a text packet that announces its attachments, followed by each as a binary message.
"""

from __future__ import annotations

import math

from tidings.errors import ProtocolError
from tidings.protocol.socketio.packets import BINARY_TYPES, Packet, PacketType, decode_text, reconstruct

_NOT_YET = math.inf  # the deadline of a pending packet whose owner has not started it


class Decoder:
    """Turns the Engine.IO messages of one connection into Socket.IO packets.

    A binary packet arrives as a text part followed by its attachments as binary messages; the decoder
    holds the partial packet until the last one is in. So that a peer cannot make it hold much, or
    for long:

    - ``max_attachments`` bounds the attachments one packet may announce;
    - ``max_binary_size`` bounds the bytes of its attachments together;
    - ``attachment_timeout`` is how many seconds may pass from the text part to the last attachment.

    Time is passed in (``now``, seconds on any monotonic clock), and only where it counts: a text part
    that leaves a packet pending (:attr:`awaiting_attachments`) is timed by :meth:`start_deadline`,
    so that the text messages of every other packet cost no clock reading. The decoder sets no timer:
    its owner calls :meth:`check_deadline` at the :attr:`deadline`, and it raises once that has passed.
    """

    __slots__ = (
        "_attachments",
        "_deadline",
        "_expected",
        "_partial",
        "_size",
        "attachment_timeout",
        "max_attachments",
        "max_binary_size",
    )

    def __init__(
        self, max_attachments: int = 10, max_binary_size: int = 1_000_000, attachment_timeout: float = 60.0
    ) -> None:
        self.max_attachments = max_attachments
        self.max_binary_size = max_binary_size
        self.attachment_timeout = attachment_timeout
        self._partial: Packet | None = None
        self._expected = 0
        self._attachments: list[bytes] = []
        self._size = 0
        self._deadline = _NOT_YET

    @property
    def awaiting_attachments(self) -> bool:
        return self._partial is not None

    @property
    def deadline(self) -> float | None:
        """When the pending packet's last attachment is due (``inf`` until :meth:`start_deadline`);
        None if no packet is pending."""
        return self._deadline if self._partial is not None else None

    def start_deadline(self, now: float) -> float:
        """The pending packet's text part came at ``now``: its last attachment is due
        ``attachment_timeout`` later. Returns that deadline."""
        self._deadline = now + self.attachment_timeout
        return self._deadline

    def check_deadline(self, now: float) -> None:
        """Raise :class:`ProtocolError` if a pending packet's attachments are overdue; it is dropped."""
        if self._partial is not None and now >= self._deadline:
            self._reset()
            raise ProtocolError(f"binary attachments not received within {self.attachment_timeout:g}s")

    def receive_text(self, text: str) -> Packet | None:
        """Feed a text message; returns the packet, or None while its attachments are due."""
        if self._partial is not None:
            raise ProtocolError("text message while binary attachments were expected")
        packet, attachments = decode_text(text)
        if packet.type in BINARY_TYPES:
            if attachments == 0:
                raise ProtocolError("binary packet without attachments")
            if attachments > self.max_attachments:
                raise ProtocolError("too many attachments")
            self._partial, self._expected = packet, attachments
            return None
        return packet

    def receive_binary(self, data: bytes, now: float) -> Packet | None:
        """Feed a binary message that came at ``now``; returns the packet once its last attachment
        is in."""
        if self._partial is None:
            raise ProtocolError("unexpected binary message")
        self.check_deadline(now)
        self._size += len(data)
        if self._size > self.max_binary_size:
            self._reset()
            raise ProtocolError(f"binary attachments over {self.max_binary_size} bytes")
        self._attachments.append(data)
        if len(self._attachments) < self._expected:
            return None
        packet, attachments = self._partial, self._attachments
        self._reset()
        packet.data = reconstruct(packet.data, attachments)
        packet.type = PacketType.EVENT if packet.type == PacketType.BINARY_EVENT else PacketType.ACK
        return packet

    def _reset(self) -> None:
        self._partial, self._expected, self._attachments, self._size = None, 0, [], 0
        self._deadline = _NOT_YET
