"""The Socket.IO v5 connection of one Engine.IO session, as a state machine; no I/O.

Spec: https://socket.io/docs/v4/socket-io-protocol/, SIO §"Connection to a namespace", §"Sending and
receiving data" and §"Acknowledgement".

A client connects to namespaces over one Engine.IO session, and has a socket in each: CONNECTING
while the server decides (its connect handlers run), then CONNECTED, then DISCONNECTED, along
:data:`TRANSITIONS` only. :class:`Connection` takes the client's messages and says what they ask for
(:class:`ConnectRequest`, an EVENT :class:`Packet`, :class:`AckReceived`, :class:`DisconnectRequest`)
or raises :class:`ProtocolError`; it and its sockets build what the server sends (the CONNECT reply,
EVENTs with the ack ids they hand out), and so do :func:`connect_error`, :func:`namespace_disconnect`
and :func:`ack`. What they build is Engine.IO messages, ready for the session: the text packet, then
its binary attachments.

Time is passed in only where it counts, for the deadline of a binary packet's attachments
(:class:`Decoder`, :attr:`Connection.decoder`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import orjson

from tidings.errors import IllegalTransition, ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol.socketio.decoder import Decoder
from tidings.protocol.socketio.packets import Packet, PacketType, check_event, encode
from tidings.protocol.states import StateEnum


class SocketState(StateEnum):
    CONNECTING = "connecting"  # connect handlers running; what it emits waits for the CONNECT reply
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


Step = Literal["accept", "drop", "disconnect"]  # the methods of Connection that move a socket

#: A socket's legal moves, by its state and the step taken, and the only ones: any other raises
#: :class:`IllegalTransition`. A socket starts CONNECTING (:meth:`Connection.open`).
TRANSITIONS: dict[tuple[SocketState, Step], SocketState] = {
    (SocketState.CONNECTING, "accept"): SocketState.CONNECTED,  # its connect handlers returned
    (SocketState.CONNECTING, "drop"): SocketState.DISCONNECTED,  # refused, or the session ended first
    (SocketState.CONNECTED, "disconnect"): SocketState.DISCONNECTED,  # by the client or the server
}


# Read once for Connection.receive_text, which runs once per client event: on Python 3.11, reading an
# Enum member off its class costs ~70 ns.
_EVENT = PacketType.EVENT
_CONNECTED = SocketState.CONNECTED

AckCallback = Callable[[list[Any] | None], None]  # None: the socket went before the ack came


class BaseSocket:
    """A client's socket in one namespace, as far as the protocol goes: its state, what it emitted
    while CONNECTING (sent after the CONNECT reply), and the callbacks waiting for its acks.

    :class:`tidings.api.socket.Socket` extends it; only :class:`Connection` moves its state.
    """

    # Extended rather than held: the broadcast path (Socket.deliver) reads ``_state`` as an attribute
    # of the socket itself, and a socket costs no object more.
    __slots__ = ("_ack_ids", "_acks", "_pending", "_state", "namespace")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._state = SocketState.CONNECTING
        self._pending: list[list[str | bytes]] = []
        self._acks: dict[int, AckCallback] = {}
        self._ack_ids = itertools.count()

    @property
    def connected(self) -> bool:
        return self._state is SocketState.CONNECTED

    def _event(
        self, event: str, args: Sequence[Any], callback: AckCallback | None = None
    ) -> list[str | bytes]:
        """The EVENT ``event`` with ``args``; with ``callback``, one that asks for an ack, which
        ``callback`` then waits for (SIO §"Acknowledgement"). ``TypeError`` for args JSON cannot hold,
        ``ValueError`` for an event name no client takes (:func:`check_event`).

        Safe from any thread: ``count()`` and a dict's item assignment each hold the GIL throughout.
        """
        refusal = check_event(event)
        if refusal is not None:
            raise ValueError(refusal)
        if callback is None:
            return messages(Packet(PacketType.EVENT, self.namespace, [event, *args]))
        ack_id = next(self._ack_ids)
        packets = messages(Packet(PacketType.EVENT, self.namespace, [event, *args], ack_id))
        self._acks[ack_id] = callback
        return packets


S = TypeVar("S", bound=BaseSocket)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The client asks to connect to ``namespace``; ``auth`` is its CONNECT payload ({} if none).

    The server opens a socket (:meth:`Connection.open`) and accepts it (:meth:`Connection.accept`)
    once its connect handlers return, or answers :func:`connect_error`.
    """

    namespace: str
    auth: Any


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The client acked an EVENT that asked for it: ``callback`` waited for ``args``."""

    callback: AckCallback
    args: list[Any]


@dataclass(frozen=True, slots=True)
class DisconnectRequest(Generic[S]):
    """The client leaves ``socket``'s namespace; the server takes it out (:meth:`Connection.disconnect`)."""

    socket: S


#: What a client's packet asks for. An EVENT comes as the :class:`Packet` itself (its namespace's
#: socket is CONNECTED): every client event passes here, and allocates nothing more on the way.
Received = ConnectRequest | Packet | AckReceived | DisconnectRequest[S]


class Connection(Generic[S]):
    """The Socket.IO side of one Engine.IO session: its sockets, by namespace, and the decoder of its
    messages (which bounds binary packets: see :class:`Decoder`).

    ``max_namespaces`` bounds the sockets a client has at once (each costs the server a socket and
    what its handlers keep): a CONNECT past it is to be refused (:attr:`full`).
    """

    __slots__ = ("decoder", "max_namespaces", "sockets")

    def __init__(
        self,
        max_namespaces: int = 32,
        max_attachments: int = 10,
        max_binary_size: int = 1_000_000,
        attachment_timeout: float = 60.0,
    ) -> None:
        self.max_namespaces = max_namespaces
        self.decoder = Decoder(max_attachments, max_binary_size, attachment_timeout)
        #: The sockets that are CONNECTING or CONNECTED.
        self.sockets: dict[str, S] = {}

    # -- what the client sends ---------------------------------------------------------------------

    def receive_text(self, text: str) -> Received[S] | None:
        """What a text message of the client asks for. None: nothing, either because the packet is
        one to ignore (as the reference server does) or because it is a binary packet's text part:
        then the decoder :attr:`~Decoder.awaiting_attachments`, whose deadline its caller starts.
        Raises :class:`ProtocolError`."""
        packet = self.decoder.receive_text(text)
        if packet is None:
            return None
        if packet.type is _EVENT:  # the common case, without a call more
            socket = self.sockets.get(packet.namespace)
            return packet if socket is not None and socket._state is _CONNECTED else None
        return self._received(packet)

    def receive_binary(self, data: bytes, now: float) -> Received[S] | None:
        """What a binary message (an attachment) that came at ``now`` asks for: None until it is
        the last of its packet's. Raises :class:`ProtocolError`."""
        packet = self.decoder.receive_binary(data, now)
        return None if packet is None else self._received(packet)

    def _received(self, packet: Packet) -> Received[S] | None:
        socket = self.sockets.get(packet.namespace)
        match packet.type:
            case PacketType.EVENT:  # SIO §"Sending and receiving data": in a connected namespace
                if socket is not None and socket._state is SocketState.CONNECTED:
                    return packet
            case PacketType.CONNECT:  # to a namespace the client is in already: ignored
                if socket is None:
                    return ConnectRequest(packet.namespace, packet.data if packet.data is not None else {})
            case PacketType.ACK:  # SIO §"Acknowledgement"
                if socket is not None and packet.id is not None:
                    callback = socket._acks.pop(packet.id, None)
                    if callback is not None:
                        return AckReceived(callback, packet.data)
            case PacketType.DISCONNECT:
                if socket is not None and socket._state is SocketState.CONNECTED:
                    return DisconnectRequest(socket)
            case _:
                raise ProtocolError(f"unexpected {packet.type.name} packet from a client")
        return None

    # -- the sockets' states (SIO §"Connection to a namespace") ------------------------------------

    @property
    def full(self) -> bool:
        """Whether the client has ``max_namespaces`` sockets: a CONNECT to one more is refused."""
        return len(self.sockets) >= self.max_namespaces

    def open(self, socket: S) -> None:
        """``socket``, new and CONNECTING, is the client's in its namespace while the server decides."""
        if socket._state is not SocketState.CONNECTING or socket.namespace in self.sockets or self.full:
            raise IllegalTransition(f"cannot open a socket in {socket.namespace}")
        self.sockets[socket.namespace] = socket

    def accept(self, socket: S, sid: str, pid: str | None = None) -> list[list[str | bytes]]:
        """CONNECTING → CONNECTED. Returns what to send, each group at once: the CONNECT reply with
        the socket's session id ``sid`` (and, with connection state recovery, the private id ``pid``
        its client comes back with), then what it emitted meanwhile."""
        _move(socket, "accept")
        reply = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
        groups = [messages(Packet(PacketType.CONNECT, socket.namespace, reply)), *socket._pending]
        socket._pending.clear()
        return groups

    def drop(self, socket: S) -> None:
        """CONNECTING → DISCONNECTED: the server refused the socket (and answers :func:`connect_error`),
        or the session ended first. What it emitted meanwhile is dropped."""
        _move(socket, "drop")
        socket._pending.clear()
        del self.sockets[socket.namespace]

    def disconnect(self, socket: S) -> list[AckCallback]:
        """CONNECTED → DISCONNECTED: the socket leaves its namespace. Returns the callbacks that waited
        for its acks: none will come (call each with None)."""
        _move(socket, "disconnect")
        del self.sockets[socket.namespace]
        callbacks = list(socket._acks.values())
        socket._acks = {}
        return callbacks


def _move(socket: BaseSocket, step: Step) -> None:
    state = TRANSITIONS.get((socket._state, step))
    if state is None:
        raise IllegalTransition(
            f"cannot {step} the socket in {socket.namespace}: it is {socket._state.value}"
        )
    socket._state = state


# -- what the server sends -------------------------------------------------------------------------


def messages(packet: Packet) -> list[str | bytes]:
    """``packet`` as the Engine.IO messages that carry it: a text MESSAGE, then its attachments."""
    text, *attachments = encode(packet)
    assert isinstance(text, str)
    return [eio.message(text), *attachments]


def connect_error(namespace: str, message: str, data: Any = None) -> list[str | bytes]:
    """The CONNECT_ERROR that refuses a connection to ``namespace``: the official clients raise
    ``connect_error`` with ``message`` (and ``data``, if any). ``TypeError`` for data JSON cannot hold."""
    error: dict[str, Any] = {"message": message}
    if data is not None:
        error["data"] = data
    return messages(Packet(PacketType.CONNECT_ERROR, namespace, error))


def namespace_disconnect(namespace: str) -> list[str | bytes]:
    """The DISCONNECT that tells the client the server took it out of ``namespace``."""
    return messages(Packet(PacketType.DISCONNECT, namespace))


def ack(namespace: str, ack_id: int, args: list[Any]) -> list[str | bytes]:
    """The ACK of the client's event ``ack_id`` with ``args``. ``TypeError`` for args JSON cannot hold."""
    try:
        payload = orjson.dumps(args).decode()  # dumps', without its call
    except TypeError:  # bytes among the args (a BINARY_ACK), or what JSON cannot hold: encode's
        return messages(Packet(PacketType.ACK, namespace, args, ack_id))
    # What encode and messages make of an ACK without attachments, without the Packet: one per
    # event a client asks an answer to. "4": an Engine.IO MESSAGE, "3": a Socket.IO ACK.
    if namespace == "/":
        return [f"43{ack_id}{payload}"]
    return [f"43{namespace},{ack_id}{payload}"]
