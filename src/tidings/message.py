"""The message model: one message on its way to many subscribers, and what it is handed to.

A :class:`Subscriber` (a Socket.IO socket, a plain WebSocket) is handed an :class:`Outgoing` message
and asks it for the bytes of its own wire form, which the message encodes once and caches, so a
broadcast to any number of sockets costs one encode per wire form, not one per recipient.

Its wire forms: :func:`socketio_packets` (the Engine.IO packets of a Socket.IO EVENT, cached per
namespace under :func:`wire_form`) and :func:`raw_frame` (a plain WebSocket's payload, under
:data:`RAW`); :func:`frame_for` frames a payload for the WebSocket once for all its recipients.
A :class:`Burst` is a channel's messages of one loop iteration, written to each WebSocket that
takes it (:meth:`Subscriber.take_burst`) in one piece.

A message of a channel with history has a :class:`Position` in it; :class:`Recovery` is what a
history holds after a position. An emit's message has an :class:`Audience`: whom it reaches. With
connection state recovery on, every message has a ``log_offset`` too: its place in the broker's
packet log, which Socket.IO clients get as the last argument of the event (:func:`socketio_packets`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from tidings.protocol import socketio as sio
from tidings.protocol import websocket as ws

T = TypeVar("T")


class Position(NamedTuple):
    """Where a message is in its channel's history."""

    offset: int
    epoch: str

    def wire(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}

    @classmethod
    def parse(cls, value: Any) -> Position | None:
        """``{"offset": n, "epoch": e}`` from a client, or None if it is not one."""
        if not isinstance(value, dict):
            return None
        offset, epoch = value.get("offset"), value.get("epoch")
        if type(offset) is not int or offset < 0 or not isinstance(epoch, str) or len(epoch) > 64:
            return None
        return cls(offset, epoch)


class Audience(NamedTuple):
    """Whom an emit reaches: the members of ``channels`` and the subscribers ``session_ids``, each
    once, but the members of ``exclude_channels`` and the subscribers ``exclude_sessions``.

    With no targets (``to=None``) an emit goes to a whole namespace, and only its exclusions apply.
    """

    channels: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()
    exclude_channels: frozenset[str] = frozenset()
    exclude_sessions: frozenset[str] = frozenset()

    def excludes(self, subscriber: Subscriber) -> bool:
        if subscriber.session_id in self.exclude_sessions:
            return True
        excluded = self.exclude_channels
        return bool(excluded) and any(channel in excluded for channel in subscriber.subscriptions)


class Outgoing:
    """One message on its way to many subscribers: ``message`` in ``channel`` (None: no channel).

    ``event`` names an event for protocols that have them (None: the default, ``message``); with an
    event, ``message`` is the list of its arguments. :meth:`encoded` encodes it at most once per wire
    form; every recipient that shares the form gets the same objects.

    ``audience`` is an emit's (``tidings.emit``): whom it reaches, and whom it leaves out.
    ``position`` is where the message is in its channel's history (channels with history only), set by
    the broker before any encoding. ``log_offset`` is where it is in the packet log of connection
    state recovery (servers with the ``connection_state_recovery`` setting only), set by the broker
    before any encoding too: one offset per message, so it is encoded once for all its recipients.
    """

    __slots__ = ("audience", "channel", "encodings", "event", "log_offset", "message", "position")

    def __init__(
        self,
        message: Any,
        channel: str | None = None,
        event: str | None = None,
        audience: Audience | None = None,
    ) -> None:
        self.message = message
        self.channel = channel
        self.event = event
        self.audience = audience
        self.position: Position | None = None
        self.log_offset: str | None = None
        #: The wire forms made so far, by form: what :meth:`encoded` returns. Read only, by the
        #: per-recipient path of a fan-out, which looks here first to spare itself the call.
        self.encodings: dict[Hashable, Any] = {}

    def encoded(self, form: Hashable, encode: Callable[..., T], *args: Any) -> T:
        """The message in wire form ``form``: ``encode(self, *args)`` the first time, then cached."""
        try:
            value: T = self.encodings[form]
        except KeyError:
            value = self.encodings[form] = encode(self, *args)
        return value


def presence_notice(
    channel: str, joined: dict[str, Any], left: dict[str, Any], count: int | None, max_diff: int
) -> Outgoing:
    """What the members of a channel with presence are told of its joins and leaves of a moment (a
    ``presence`` event): ``(channel, {"joined": [...], "left": [...], "count": n})``, each member
    ``{"session_id", "info"}``; with more than ``max_diff`` of them, ``(channel, {"count": n})``.
    ``count`` is how many are in the channel after them (left out if it could not be read)."""
    notice: dict[str, Any] = {} if count is None else {"count": count}
    if len(joined) + len(left) <= max_diff:
        notice["joined"] = [{"session_id": session_id, "info": info} for session_id, info in joined.items()]
        notice["left"] = [{"session_id": session_id, "info": info} for session_id, info in left.items()]
    return Outgoing([channel, notice], channel, "presence")


class Subscriber(Protocol):
    """What the hub holds: a connection that can be handed messages (on the event loop thread)."""

    session_id: str
    #: The channels this subscriber is in, in join order (a dict used as an ordered set); written by
    #: the hub only.
    subscriptions: dict[str, None]

    def deliver(self, outgoing: Outgoing) -> None: ...

    def take_burst(self, burst: Burst) -> bool:
        """Take ``burst``'s messages in one write at the end of the loop iteration (True), or each
        as it comes through :meth:`deliver` (False: it cannot, or is in another burst already).

        By default False: a subscriber that derives from this class is handed each message."""
        return False


class BurstSink(Protocol):
    """A connection that took a :class:`Burst`: its messages are written to it in one piece."""

    def write_burst(self, data: bytes) -> None:
        """Write ``data``, the frames of the burst's messages, after what was queued before."""


#: Encodes a message as the frames of one wire form: ``encode(outgoing, namespace)``.
FrameEncoder = Callable[["Outgoing", str], bytes]


class _BurstGroup:
    """A burst's recipients of one wire form: how the messages are encoded for them, and the frames
    of the messages encoded so far (each message is encoded once, whoever leaves when)."""

    __slots__ = ("encode", "frames", "namespace", "sinks")

    def __init__(self, encode: FrameEncoder, namespace: str) -> None:
        self.encode = encode
        self.namespace = namespace
        self.sinks: dict[BurstSink, Subscriber] = {}
        self.frames: list[bytes] = []

    def data(self, outgoings: list[Outgoing]) -> bytes:
        """The frames of ``outgoings`` (the burst's, of which the first ones were encoded before)."""
        frames, encode, namespace = self.frames, self.encode, self.namespace
        for outgoing in outgoings[len(frames) :]:
            frames.append(encode(outgoing, namespace))
        return b"".join(frames)


class Burst:
    """The messages one fan-out makes in one loop iteration (a channel's publishes), and their
    recipients: a broadcast then costs one call per recipient per iteration, not per message.

    Recipients that can (WebSocket connections) :meth:`join` it with a wire form; at the end of the
    iteration (:meth:`close`) the burst encodes its messages once per form and each of them gets
    them in one write. The others are ``followers``: the hub delivers each message to them as it
    comes. A recipient that has to be sent anything else first :meth:`leave` s: it gets what the
    burst holds so far, then follows, so each connection's frames stay in the order they were sent.
    """

    __slots__ = ("_groups", "exclude", "followers", "outgoings", "recipients")

    def __init__(self, exclude: Subscriber | None) -> None:
        #: The subscriber the burst's messages are not for (the sender of a broadcast).
        self.exclude = exclude
        self.outgoings: list[Outgoing] = []
        self.followers: list[Subscriber] = []
        #: How many subscribers each message reaches.
        self.recipients = 0
        self._groups: dict[Hashable, _BurstGroup] = {}  # by wire form

    def join(
        self, member: Subscriber, sink: BurstSink, form: Hashable, encode: FrameEncoder, namespace: str
    ) -> None:
        """``member`` gets the burst's messages through ``sink``, encoded by ``encode``."""
        group = self._groups.get(form)
        if group is None:
            group = self._groups[form] = _BurstGroup(encode, namespace)
        group.sinks[sink] = member

    def add(self, outgoing: Outgoing) -> int:
        """One more message for the same recipients; returns how many it reaches."""
        self.outgoings.append(outgoing)
        if self.followers:
            # A copy: one who leaves while this runs got ``outgoing`` with what it was handed.
            for member in tuple(self.followers):
                member.deliver(outgoing)
        return self.recipients

    def leave(self, sink: BurstSink, form: Hashable) -> bytes:
        """Take ``sink`` out (it has to be sent something else): the frames of the messages so far,
        for it to queue; its subscriber is handed the next ones as they come."""
        group = self._groups.get(form)
        member = group.sinks.pop(sink, None) if group is not None else None
        if group is None or member is None:
            return b""
        self.followers.append(member)
        return group.data(self.outgoings)

    def close(self) -> None:
        """Write the messages to every sink that is still in (the end of the loop iteration)."""
        groups, self._groups = self._groups, {}
        for group in groups.values():
            data = group.data(self.outgoings)
            for sink in group.sinks:
                sink.write_burst(data)


@dataclass
class Recovery:
    """What a channel's history holds after a position: ``messages`` (in order) up to ``position``.

    ``reason`` is None when the messages are all that followed ``since``; otherwise recovery was
    impossible and ``messages`` is empty. ``position`` is the history's newest position either way: a
    live message after it is new to whoever got these.
    """

    position: Position
    messages: list[Outgoing] = field(default_factory=list)
    reason: str | None = None


# -- wire forms (the keys and encoders of Outgoing.encoded) ---------------------------------------


def wire_form(namespace: str) -> str:
    """The key under which an :class:`Outgoing` caches its Socket.IO encoding for ``namespace``.

    A string, which keeps its hash: it is looked up once per recipient of a broadcast (a tuple is
    hashed again on every lookup). A namespace starts with "/", so no other form is the same."""
    return "socket.io" + namespace


def socketio_packets(outgoing: Outgoing, namespace: str) -> list[str | bytes]:
    """``outgoing`` as the Engine.IO packets of a Socket.IO EVENT in ``namespace``: ``message`` with
    the message (and its channel and position), or the event it names with its arguments; then its
    log offset, if it has one, as the last argument (where Socket.IO's session-aware adapter puts it,
    and where its official clients look for it)."""
    if outgoing.event is not None:  # Server.emit: the event with its arguments
        args = [outgoing.event, *outgoing.message]
    else:
        args = ["message", outgoing.message]
        if outgoing.channel is not None:
            args.append(outgoing.channel)
            if outgoing.position is not None:
                args.append(outgoing.position.wire())
    if outgoing.log_offset is not None:
        args.append(outgoing.log_offset)
    return sio.messages(sio.Packet(sio.PacketType.EVENT, namespace, args))


#: The wire form of hub messages on plain WebSockets.
RAW = "raw"


def raw_frame(outgoing: Outgoing) -> str | bytes:
    """A hub message as a plain WebSocket frame: text as text, bytes as binary, else JSON text."""
    message = outgoing.message
    if isinstance(message, str):
        return message
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    return orjson.dumps(message).decode()


# The frame of the last payload, kept so that a broadcast (one object, many recipients) is framed once.
# Only immutable payloads (str, bytes) are kept; the reference keeps the identity check sound. One
# tuple, replaced whole, so that servers on event loops in other threads never see a payload beside
# another payload's frame.
_last: tuple[object, bytes] = (None, b"")


def frame_for(data: str | bytes | bytearray | memoryview) -> bytes:
    """The text (``str``) or binary frame of ``data``, built once per payload object in a row."""
    global _last
    payload, frame = _last
    if data is payload:
        return frame
    if isinstance(data, str):
        frame = ws.text_frame(data)
    elif isinstance(data, bytes):
        frame = ws.binary_frame(data)
    else:
        return ws.binary_frame(bytes(data))
    _last = (data, frame)
    return frame


def socketio_frames(outgoing: Outgoing, namespace: str) -> bytes:
    """``outgoing`` as the WebSocket frames of its Socket.IO packets in ``namespace`` (a
    :class:`Burst`'s encoder): the packets are :func:`socketio_packets`, cached as every socket's."""
    packets = outgoing.encoded(wire_form(namespace), socketio_packets, namespace)
    return b"".join([frame_for(packet) for packet in packets])
