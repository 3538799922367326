"""Out-of-band sends: ``tidings.emit``, ``tidings.broadcast``, ``tidings.broadcast_channel``,
``tidings.send``, and their ``async`` twins ``aemit``, ``abroadcast``, ``abroadcast_channel``, ``asend``.

Callable from any code that is not a handler: a WSGI view in a worker thread, a background thread, a
coroutine. They go through the broker of every server running in this process (once per broker: a
Redis broker reaches every node by itself). From a thread other than the server's event loop they wait
(briefly) for the message to be taken, so that they can say how many took it and raise
:class:`NoSocket` when nobody could receive it: with the memory broker, how many sockets; with the
Redis broker, how many server processes. A message that waits in the Redis broker's buffer while
Redis cannot be reached counts 0 (nobody took it yet) and raises nothing (the ``broker_buffer`` setting).

In a process that runs no server, they publish through a :class:`~tidings.api.publisher.Publisher` to the
broker the environment variable ``TIDINGS_BROKER`` names, if it names a shared one (``redis://...``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from tidings.api import routing
from tidings.api.publisher import Publisher
from tidings.api.routing import Send, prepare, route
from tidings.brokers import BROKER_ENV, Buffered, MemoryBroker
from tidings.channels import MAX_CHANNEL_LENGTH, Targets, check_channel_name, check_session_id, require
from tidings.errors import NoSocket
from tidings.hub import Hub, running_hubs


def emit(
    event: str, *args: Any, to: Targets | None = None, namespace: str = "/", exclude: Targets | None = None
) -> int:
    """Send the Socket.IO event ``event`` with ``args`` (JSON values or bytes) to every socket of
    ``namespace``, or to those ``to`` names: a channel (its members, in any namespace), a session id
    (that socket), a socket, or a list of them — each socket once. ``exclude`` (the same kinds) leaves
    out those sockets and the members of those channels.

    A string of the form of a session id (``socket.session_id``) names that socket; any other string
    a channel. Returns how many took it (see the module docstring); raises :class:`NoSocket` if that
    is none, ``ValueError`` for a reserved or empty event name, or a channel name no socket could
    subscribe to.
    """
    return _wait(_emit(event, args, to, namespace, exclude))


async def aemit(
    event: str, *args: Any, to: Targets | None = None, namespace: str = "/", exclude: Targets | None = None
) -> int:
    """:func:`emit` for coroutines."""
    return await _await(_emit(event, args, to, namespace, exclude))


def broadcast(message: Any, namespace: str = "/") -> int:
    """Send ``message`` (any JSON value or bytes) to every socket connected to ``namespace``.

    Clients get it as the ``message`` event. Returns how many took it (see the module docstring);
    raises :class:`NoSocket` if that is none.
    """
    return _wait(Send(message, namespace=namespace))


def broadcast_channel(message: Any, channel: str) -> int:
    """Send ``message`` to every socket subscribed to ``channel``, as ``message`` with the channel.

    Returns how many took it; raises :class:`NoSocket` if that is none, ``ValueError`` for a channel
    name no socket could subscribe to (not a string, empty, over ``max_channel_length``).
    """
    return _wait(_to_channel(message, channel))


def send(session_id: str, message: Any) -> int:
    """Send ``message`` to the one socket whose ``session_id`` this is; returns 1.

    Raises :class:`NoSocket` if no such socket is connected (with the Redis broker: if the server
    process that held it is gone), ``ValueError`` if ``session_id`` is no session id.
    """
    _wait(_to_session(session_id, message))
    return 1


async def abroadcast(message: Any, namespace: str = "/") -> int:
    """:func:`broadcast` for coroutines: waits for the count without blocking the event loop."""
    return await _await(Send(message, namespace=namespace))


async def abroadcast_channel(message: Any, channel: str) -> int:
    """:func:`broadcast_channel` for coroutines."""
    return await _await(_to_channel(message, channel))


async def asend(session_id: str, message: Any) -> int:
    """:func:`send` for coroutines."""
    await _await(_to_session(session_id, message))
    return 1


def presence(channel: str) -> list[dict[str, Any]]:
    """Who is in ``channel`` (a channel the ``presence`` setting names), on every server process:
    ``[{"session_id": ..., "info": {...}}, ...]``, ``info`` being each socket's ``presence_info``.

    Raises ``ValueError`` for a channel without presence, :class:`~tidings.brokers.BrokerError` when
    Redis cannot be reached. Blocks: not for the server's event loop (use :func:`apresence` there).
    """
    hubs = _hubs()
    if not hubs:
        return _shared_publisher().presence(channel)
    hub = hubs[0]
    if hub.in_loop_thread():
        raise RuntimeError("tidings.presence() blocks; use 'await tidings.apresence()' on the event loop")
    _check_presence(hub, channel)
    members: list[dict[str, Any]] = hub.call(_presence_task, hub, channel)  # type: ignore[arg-type]
    return members


async def apresence(channel: str) -> list[dict[str, Any]]:
    """:func:`presence` for coroutines."""
    hubs = _hubs()
    if not hubs:
        return await _shared_publisher().apresence(channel)
    hub = hubs[0]
    _check_presence(hub, channel)
    if hub.in_loop_thread():
        return await hub.broker.presence(channel)
    members: list[dict[str, Any]] = await hub.acall(_presence_task, hub, channel)
    return members


def _presence_task(hub: Hub, channel: str) -> asyncio.Future[list[dict[str, Any]]]:
    return asyncio.ensure_future(hub.broker.presence(channel))


def _channel_limit() -> int:
    """The longest channel name any running server (or, with none, the default ``max_channel_length``)
    lets a socket subscribe to: what names out-of-band sends accept."""
    return max((hub.max_channel_length for hub in _hubs()), default=MAX_CHANNEL_LENGTH)


def _to_channel(message: Any, channel: str) -> Send:
    require(check_channel_name(channel, _channel_limit()))
    return Send(message, channel=channel)


def _emit(
    event: str, args: tuple[Any, ...], to: Targets | None, namespace: str, exclude: Targets | None
) -> Send:
    return routing.emit(event, args, to, namespace, exclude, _channel_limit())


def _to_session(session_id: str, message: Any) -> Send:
    require(check_session_id(session_id))
    return Send(message, session_id=session_id)


def _check_presence(hub: Hub, channel: str) -> None:
    require(check_channel_name(channel, hub.max_channel_length))
    if not hub.options.presence(channel):
        raise ValueError(f"no presence for channel {channel!r}: see the presence setting")


def _wait(send: Send) -> int:
    """Route ``send`` through every hub (once per broker reach) and wait for how many took it."""
    hubs = _hubs()
    if not hubs:
        return _fallback_publisher(send)._route(send)
    reached = 0
    pending = False
    for hub in hubs:
        count = route(send, hub.broker, hub.call)
        if isinstance(count, asyncio.Future):
            # On the server's own event loop with a remote broker: the answer cannot be waited
            # for here. The message is queued, in order; the count is not known (use the async twin).
            pending = True
        else:
            pending = pending or isinstance(count, Buffered)  # waits for Redis: nobody took it yet
            reached += count
    if not reached and not pending:
        raise _nobody(send)
    return reached


async def _await(send: Send) -> int:
    """:func:`_wait` for coroutines."""
    hubs = _hubs()
    if not hubs:
        return await _fallback_publisher(send)._aroute(send)
    reached = 0
    buffered = False
    for hub in hubs:
        count = await route(send, hub.broker, hub.acall)
        buffered = buffered or isinstance(count, Buffered)
        reached += count
    if not reached and not buffered:
        raise _nobody(send)
    return reached


#: What :class:`NoSocket` says when no socket took a send, by the kind of its target.
_NOBODY = {
    "audience": "no socket in any of {}",
    "channel": "no socket is subscribed to channel {!r}",
    "namespace": "no socket is connected to namespace {!r}",
    "session": "no socket with session id {!r}",
}


def _nobody(send: Send) -> NoSocket:
    kind, name = send.target
    return NoSocket(_NOBODY[kind].format(name))


def _hubs() -> list[Hub]:
    """The running hubs, one per broker reach: a shared broker reaches every node's hub by itself."""
    hubs: dict[Any, Hub] = {}
    for hub in running_hubs():
        hubs.setdefault(hub.broker.reach, hub)
    return list(hubs.values())


_publisher: Publisher | None = None
_UNSHARED = MemoryBroker()
_publisher_lock = threading.Lock()


def _fallback_publisher(send: Send) -> Publisher:
    """:func:`_shared_publisher`, for ``send``: a message JSON cannot hold raises TypeError first."""
    if _shared_broker_url() is None:
        prepare(send.outgoing, send.namespace, _UNSHARED)
    return _shared_publisher()


def _shared_broker_url() -> str | None:
    """The URL of the shared broker ``TIDINGS_BROKER`` names; None if it names none (or memory)."""
    url = os.environ.get(BROKER_ENV, "")
    return None if url in ("", "memory", "memory://") else url


def _shared_publisher() -> Publisher:
    """A process-wide publisher to the shared broker ``TIDINGS_BROKER`` names; NoSocket if none."""
    url = _shared_broker_url()
    if url is None:
        raise NoSocket("no tidings server is running in this process")
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.url != url:
            _publisher = Publisher(url)
        return _publisher
