"""Connection state recovery, Socket.IO's (the ``connection_state_recovery`` setting): what a socket
leaves behind when its transport drops, and how a client that comes back in time takes it up again.

As Socket.IO 4 does it (https://socket.io/docs/v4/connection-state-recovery): each socket has a
private id, its ``pid``, sent in its CONNECT reply ``{"sid", "pid"}``; each packet a broadcast or a
send hands it carries a log offset as its last argument (:mod:`tidings.message`). When its transport
drops (:data:`RECOVERABLE`), the broker keeps the socket's state under its pid
(:class:`~tidings.channels.KeptSession`). The official client reconnects with ``{"pid", "offset"}``
(the last offset it got) in its CONNECT payload; if the state is still kept and the broker's packet
log still holds the offset, the new socket takes it up: the same session id, context and presence
info (:func:`take`, before its ``connect`` handlers run, which see ``socket.recovered``), then its
channels and the packets sent to it meanwhile, in order, before the CONNECT reply with the same pid
(:func:`resume`): the client's ``socket.recovered`` is true. Anything else (no such pid, its time
passed, a log that no longer holds the offset, a made-up pair) gets a new socket, as without them.
"""

from __future__ import annotations

import logging
from typing import Any

from tidings.api.socket import Socket
from tidings.brokers import BrokerError
from tidings.brokers.base import Missed
from tidings.channels import PID, KeptSession, new_pid
from tidings.hub import Hub
from tidings.server.logs import context

logger = logging.getLogger("tidings.socketio")

#: The ends of a socket after which its state is kept: its transport went, not the client nor the
#: server chose to end it (Socket.IO's RECOVERABLE_DISCONNECT_REASONS; its "transport close" covers a
#: client's Engine.IO close, which is tidings' "client close").
RECOVERABLE = frozenset(
    {"transport close", "transport error", "ping timeout", "client close", "server shutdown"}
)

#: The longest log offset a client may come back with: longer is none of a broker's.
MAX_OFFSET_LENGTH = 64

_warned_context = False


def comeback(auth: Any) -> tuple[str, str] | None:
    """The ``pid`` and ``offset`` of a CONNECT payload, if it has both in their form (the official
    client sends them when it reconnects); None for anything else."""
    if not isinstance(auth, dict):
        return None
    pid, offset = auth.get("pid"), auth.get("offset")
    if not (isinstance(pid, str) and PID.fullmatch(pid) and isinstance(offset, str)):
        return None
    return (pid, offset) if 0 < len(offset) <= MAX_OFFSET_LENGTH else None


def keep(hub: Hub, socket: Socket, channels: tuple[str, ...]) -> None:
    """Keep the state of ``socket`` (in ``channels``), whose transport dropped, under its pid."""
    assert socket._pid is not None
    state = KeptSession(socket.session_id, socket.namespace, channels, socket.context, socket.presence_info)
    try:
        data = state.to_json()
    except TypeError as error:
        global _warned_context
        if not _warned_context:  # once: it would be said for every socket of the app
            _warned_context = True
            logger.warning(
                "connection state recovery: the context of socket %s cannot be kept (%s); sockets "
                "whose context or presence_info JSON cannot hold do not recover",
                socket.session_id,
                error,
            )
        return
    hub.broker.keep_session(socket._pid, data)


async def take(hub: Hub, socket: Socket, pid: str, offset: str) -> KeptSession | None:
    """Give the new ``socket`` the state kept under ``pid`` (its session id, context and presence
    info) if the broker has it and still logs ``offset``; the state, or None (a new socket, then)."""
    try:
        kept = await hub.broker.take_session(pid, offset)
    except BrokerError as error:
        logger.warning("connection state recovery: no session restored: %s", error)
        return None
    if kept is None or kept.namespace != socket.namespace:
        return None
    socket.session_id = kept.session_id
    socket.context = kept.context
    socket.presence_info = kept.presence_info
    socket._pid = pid
    socket.recovered = True
    return kept


async def resume(hub: Hub, socket: Socket, kept: KeptSession, offset: str) -> Missed | None:
    """Put ``socket`` (CONNECTING, with the state of ``kept``) back in its namespace and channels, and
    read what it missed after ``offset``; hub messages to it meanwhile are held (:attr:`Socket._held`).

    Returns what it missed, or None if that cannot be had (the log no longer holds ``offset``, the
    broker failed): the socket then goes on as a new one (a new pid) with its state, and the client
    sees ``socket.recovered`` false.
    """
    broker = hub.broker
    socket._held = []
    hub.join(socket, socket.namespace)
    broker.adopt(socket.session_id)
    for channel in kept.channels:
        hub.subscribe(socket, channel)
    try:
        if broker.remote:
            await broker.ready()  # its channels' messages reach this node before the log is read
        missed = await broker.missed(kept, offset)
    except BrokerError as error:
        logger.warning(
            "connection state recovery: what %s missed is unknown: %s",
            socket.session_id,
            error,
            extra=context(socket.session_id, socket.namespace),
        )
        missed = None
    if missed is None:
        socket.recovered = False
        socket._pid = new_pid()
    return missed


def missed_packets(socket: Socket, missed: Missed | None) -> list[str | bytes]:
    """The packets of what ``socket`` missed, sent before its CONNECT reply (as Socket.IO does: the
    client hands them to the app once it is connected, before its ``connect`` event)."""
    if missed is None:
        return []
    return [packet for outgoing in missed.messages for packet in socket.packets(outgoing)]


def release_held(hub: Hub, socket: Socket, missed: Missed | None) -> None:
    """Hand the now connected ``socket`` the hub messages held while it was recovered that the log
    read had not: those logged after :attr:`Missed.last` (all of them if it could not be read)."""
    held, socket._held = socket._held or [], None
    for outgoing in held:
        offset = outgoing.log_offset
        if missed is None or offset is None or hub.broker.newer(offset, missed.last):
            socket.deliver(outgoing)
