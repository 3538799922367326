"""Where a message goes: the one way every send of tidings takes to the broker.

Every send — a socket's ``broadcast*`` and ``send_and_broadcast*``, ``Server.emit``, the module
functions ``tidings.broadcast`` & co and their ``async`` twins, ``Publisher`` — is one :func:`route`
of one :class:`Send`: a message (or an event with its arguments) and its target, a channel, a session
id or a namespace, less the one socket it leaves out. The journey of one send:

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
   ``publish`` (channel), ``send`` (session id), ``broadcast`` (namespace) — which carries it to the
   hub of every node; each hub hands it to its local members (:class:`tidings.hub.Hub`). The broker
   answers with its :data:`~tidings.brokers.Count`: how many took it, now or (Redis) later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tidings.brokers import Broker, Count
from tidings.message import Outgoing, Subscriber, socketio_packets, wire_form

R = TypeVar("R")


class Send:
    """One send: ``message`` (or, with ``event``, that event with ``message`` as its list of arguments)
    to the members of ``channel``, to the one socket ``session_id``, or else to every socket of
    ``namespace`` — all but ``exclude`` (channels and namespaces only).

    With a channel or a session id, ``namespace`` is the one the message is encoded for ahead of the
    trip (the sender's: the usual namespace of the recipients).
    """

    __slots__ = ("exclude", "namespace", "outgoing", "session_id")

    def __init__(
        self,
        message: Any,
        *,
        event: str | None = None,
        channel: str | None = None,
        session_id: str | None = None,
        namespace: str = "/",
        exclude: Subscriber | None = None,
    ) -> None:
        self.outgoing = Outgoing(message, channel, event)
        self.session_id = session_id
        self.namespace = namespace
        self.exclude = exclude

    @property
    def target(self) -> tuple[str, str]:
        """What it goes to: ``("channel", name)``, ``("session", session_id)`` or ``("namespace", name)``."""
        if self.outgoing.channel is not None:
            return ("channel", self.outgoing.channel)
        if self.session_id is not None:
            return ("session", self.session_id)
        return ("namespace", self.namespace)


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
