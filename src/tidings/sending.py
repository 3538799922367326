"""Out-of-band sends: ``tidings.broadcast``, ``tidings.broadcast_channel``, ``tidings.send``.

Callable from any code that is not a handler: a WSGI view in a worker thread, a background thread, a
coroutine. They go through every server running in this process; from a thread other than the
server's event loop they wait (briefly) for the loop to take the message, so that they can say how
many sockets it reached and raise :class:`NoSocket` when nobody could receive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tidings.hub import Hub, NoSocket, Outgoing, running_hubs
from tidings.server.socketio import prepare


def broadcast(message: Any, namespace: str = "/") -> int:
    """Send ``message`` (any JSON value or bytes) to every socket connected to ``namespace``.

    Clients get it as the ``message`` event. Returns the number of sockets it was handed to; raises
    :class:`NoSocket` if that is none.
    """
    outgoing = prepare(Outgoing(message), namespace)
    reached = _each_hub(lambda hub: hub.call(hub.broadcast, outgoing, namespace))
    if not reached:
        raise NoSocket(f"no socket is connected to namespace {namespace!r}")
    return reached


def broadcast_channel(message: Any, channel: str) -> int:
    """Send ``message`` to every socket subscribed to ``channel``, as ``message`` with the channel.

    Returns the number of sockets it was handed to; raises :class:`NoSocket` if that is none.
    """
    outgoing = prepare(Outgoing(message, channel), "/")
    reached = _each_hub(lambda hub: hub.call(hub.publish, outgoing))
    if not reached:
        raise NoSocket(f"no socket is subscribed to channel {channel!r}")
    return reached


def send(session_id: str, message: Any) -> int:
    """Send ``message`` to the one socket whose ``session_id`` this is; returns 1.

    Raises :class:`NoSocket` if no such socket is connected.
    """
    outgoing = prepare(Outgoing(message), "/")
    if not _each_hub(lambda hub: hub.call(hub.send, outgoing, session_id)):
        raise NoSocket(f"no socket with session id {session_id!r}")
    return 1


def _each_hub(deliver: Callable[[Hub], int]) -> int:
    hubs: list[Hub] = running_hubs()
    if not hubs:
        raise NoSocket("no tidings server is running in this process")
    return sum(deliver(hub) for hub in hubs)
