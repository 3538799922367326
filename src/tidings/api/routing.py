"""Where a message goes: the one way every send of tidings takes to the broker.

Every send — a socket's ``broadcast*``, ``send_and_broadcast*`` and ``emit(..., to=)``,
``Server.emit``, the module functions ``tidings.broadcast``, ``tidings.emit`` & co and their ``async``
twins, ``Publisher`` — is one :func:`route` of one :class:`Send`: a message (or an event with its
arguments) and its target, a channel, a session id, several of them (:func:`emit`) or a namespace,
less the sockets it leaves out. The journey of one send:

1. The caller builds the :class:`Send` and calls :func:`route` in its own thread (a handler, a WSGI
   view, any thread or coroutine).
2. :func:`prepare` encodes the message there, once for all its recipients: ``TypeError`` for a value
   JSON cannot hold is raised to the caller. With the memory broker it builds the Socket.IO packets
   for the send's namespace, so the event loop is left only the writes; a remote broker encodes the
   envelope it carries.
3. The caller's ``run`` takes the hand-over to the broker's event loop: ``hub.post`` (a socket's
   sends, ``Server.emit``: fire and forget), ``hub.call`` / ``hub.acall`` (the module functions: wait
   for the count), or the publisher's connection. A thread's hand-overs run in the order it made
   them, after what it posted before.
4. On the loop, :func:`hand_over` gives the message to the broker method its target names —
   ``publish`` (channel), ``send`` (session id), ``emit`` (several of them), ``broadcast``
   (namespace) — which carries it to the hub of every node; each hub hands it to its local members
   (:class:`tidings.hub.Hub`). The broker answers with its :data:`~tidings.brokers.Count`: how many
   took it, now or (Redis) later.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tidings.brokers import Broker, Count
from tidings.channels import MAX_CHANNEL_LENGTH, Targets, require, split_targets
from tidings.message import Audience, Outgoing, Subscriber, socketio_packets, wire_form
from tidings.protocol.socketio import check_event

R = TypeVar("R")

#: The targets an emit names, as its :class:`NoSocket` error lists them: the first few, whole.
_NAMES = reprlib.Repr()
_NAMES.maxlist, _NAMES.maxstring = 5, 100


class Send:
    """One send: ``message`` (or, with ``event``, that event with ``message`` as its list of arguments)
    to the members of ``channel``, to the one socket ``session_id``, to an ``audience`` of several
    channels and session ids (with ``to_audience``), or else to every socket of ``namespace`` — all but
    ``exclude`` (channels and namespaces only) and those the ``audience`` excludes.

    With a target, ``namespace`` is the one the message is encoded for ahead of the trip (the
    sender's: the usual namespace of the recipients). ``ValueError`` for an event name no client takes.
    """

    __slots__ = ("exclude", "namespace", "outgoing", "session_id", "to_audience")

    def __init__(
        self,
        message: Any,
        *,
        event: str | None = None,
        channel: str | None = None,
        session_id: str | None = None,
        namespace: str = "/",
        exclude: Subscriber | None = None,
        audience: Audience | None = None,
        to_audience: bool = False,
    ) -> None:
        if event is not None:
            require(check_event(event))
        self.outgoing = Outgoing(message, channel, event, audience)
        self.session_id = session_id
        self.namespace = namespace
        self.exclude = exclude
        self.to_audience = to_audience

    @property
    def target(self) -> tuple[str, str]:
        """What it goes to: ``("channel", name)``, ``("session", session_id)``, ``("audience", names)``
        or ``("namespace", name)``."""
        if self.outgoing.channel is not None:
            return ("channel", self.outgoing.channel)
        if self.session_id is not None:
            return ("session", self.session_id)
        if self.to_audience and self.outgoing.audience is not None:
            audience = self.outgoing.audience
            return ("audience", _NAMES.repr([*audience.channels, *audience.session_ids]))
        return ("namespace", self.namespace)


def emit(
    event: str,
    args: Iterable[Any],
    to: Targets | None = None,
    namespace: str = "/",
    exclude: Targets | None = None,
    max_channel_length: int = MAX_CHANNEL_LENGTH,
) -> Send:
    """The send of ``emit(event, *args, to=..., namespace=..., exclude=...)``: the event to every
    socket of ``namespace`` (``to`` None), or to the channels and session ids ``to`` names, each socket
    once; in either case not to the sockets ``exclude`` names (by session id) or holds (by channel).

    One channel or one session id takes the route of a channel broadcast or a send; several take the
    broker's :meth:`~tidings.brokers.Broker.emit`. ``ValueError`` for an event name no client takes,
    a channel name over ``max_channel_length``, or a target that is none (see
    :func:`~tidings.channels.split_targets`).
    """
    message = list(args)
    left_out = ((), ()) if exclude is None else split_targets(exclude, max_channel_length)
    channels, session_ids = ((), ()) if to is None else split_targets(to, max_channel_length)
    audience = Audience(channels, session_ids, frozenset(left_out[0]), frozenset(left_out[1]))
    filtering = audience if left_out != ((), ()) else None  # what the other routes need of it
    if to is None:
        return Send(message, event=event, namespace=namespace, audience=filtering)
    if len(channels) == 1 and not session_ids:
        return Send(message, event=event, channel=channels[0], namespace=namespace, audience=filtering)
    if len(session_ids) == 1 and not channels:
        return Send(message, event=event, session_id=session_ids[0], namespace=namespace, audience=filtering)
    return Send(message, event=event, namespace=namespace, audience=audience, to_audience=True)


#: The hand-over :func:`route` gives its ``run``: called with the broker and the send, on the loop.
HandOver = Callable[[Broker, Send], Count]


def route(send: Send, broker: Broker, run: Callable[[HandOver, Broker, Send], R]) -> R:
    """Send ``send`` through ``broker``: encode it now, in the calling thread (:func:`prepare`), then
    ``run(hand_over, broker, send)`` on the broker's event loop, and return what ``run`` returns.

    ``run`` is ``hub.post`` (nothing returned), ``hub.call`` (the broker's :data:`Count`; from
    another thread, an int), ``hub.acall`` (an awaitable of the count), or any callable that gets
    the hand-over to the loop where ``broker`` lives.
    """
    prepare(send.outgoing, send.namespace, broker)
    return run(hand_over, broker, send)


def hand_over(broker: Broker, send: Send) -> Count:
    """Give ``send`` to the broker method its target names (event loop thread); the broker's count."""
    outgoing = send.outgoing
    if outgoing.channel is not None:
        return broker.publish(outgoing, send.exclude)
    if send.session_id is not None:
        return broker.send(outgoing, send.session_id)
    if send.to_audience:
        audience = outgoing.audience
        assert audience is not None
        return broker.emit(outgoing) if audience.channels or audience.session_ids else 0  # to=[]: nobody
    return broker.broadcast(outgoing, send.namespace, send.exclude)


def prepare(outgoing: Outgoing, namespace: str, broker: Broker) -> Outgoing:
    """Encode ``outgoing`` now, in the calling thread, for the trip ``broker`` sends it on.

    A message JSON cannot hold raises ``TypeError`` here, at the caller. The broker prepares it first
    (a remote broker encodes its envelope; with connection state recovery, the memory broker gives it
    its log offset, part of the packet); with the memory broker the Socket.IO packets for
    ``namespace`` are then built, so the event loop is left only the writes for the (usual) case that
    every recipient is in that namespace.
    """
    broker.prepare(outgoing)
    if not broker.remote:
        outgoing.encoded(wire_form(namespace), socketio_packets, namespace)
    return outgoing
