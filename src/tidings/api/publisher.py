"""Publishing from a process that serves no sockets: a worker, a cron job, a script, a shell.

::

    publisher = tidings.Publisher("redis://127.0.0.1:6379/0")
    publisher.broadcast_channel({"price": 101.5}, "ticker")  # or: await publisher.abroadcast_channel(...)
    publisher.emit("price", 101.5, to="ticker")  # the event "price", to the channel's sockets

The servers that share the broker deliver the message as if one of them had sent it. One
implementation, :class:`AsyncPublisher`, for asyncio code; :class:`Publisher` is its blocking face (and
has the ``a``-prefixed async twins too), running it on an event loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tidings.api.routing import HandOver, Send, emit, route
from tidings.brokers import BROKER_ENV, Broker, Buffered, Count, broker_from
from tidings.channels import MAX_CHANNEL_LENGTH, Targets, check_channel_name, check_session_id, require
from tidings.errors import NoSocket
from tidings.settings import BROKER_BUFFER, BROKER_BUFFER_POLICY, Settings

T = TypeVar("T")


class AsyncPublisher:
    """Publish to the servers that share a Redis broker, from asyncio code (one event loop).

    Args:
        url: the broker's URL (``redis://...``); defaults to the environment variable
            ``TIDINGS_BROKER``.
        prefix: the Redis name prefix the servers use; defaults to ``TIDINGS_BROKER_PREFIX``, else
            ``"tidings:"``.
        max_channel_length: the servers' ``max_channel_length`` setting: a longer channel name is
            refused (no server would let a socket subscribe to it).
        broker_buffer, broker_buffer_policy: how many messages wait while Redis cannot be reached,
            and what one more does, as the servers' settings of those names (:class:`tidings.Settings`).

    Each method returns how many server processes took the message and raises :class:`NoSocket`
    when none did; a message that waits in the buffer while Redis cannot be reached returns 0.
    :class:`~tidings.brokers.BrokerError` when Redis cannot be reached at the first use, or the
    buffer is full and the policy is ``"raise"``;
    ``TypeError`` for a message JSON cannot hold, and ``ValueError`` for a channel name or session id
    that is none. The connection opens on first use.
    """

    def __init__(
        self,
        url: str | None = None,
        prefix: str | None = None,
        max_channel_length: int = MAX_CHANNEL_LENGTH,
        broker_buffer: int = BROKER_BUFFER,
        broker_buffer_policy: str = BROKER_BUFFER_POLICY,
    ) -> None:
        from tidings.brokers.redis import RedisBroker

        url = url or os.environ.get(BROKER_ENV)
        if not url:
            raise ValueError(f"give the broker URL, or set {BROKER_ENV}")
        broker = broker_from(url, prefix)
        if not isinstance(broker, RedisBroker):
            raise ValueError(f"a publisher needs a shared broker (redis://...), not {url!r}")
        broker.configure(Settings(broker_buffer=broker_buffer, broker_buffer_policy=broker_buffer_policy))
        self.url = url
        self.max_channel_length = max_channel_length
        self._broker = broker

    async def emit(
        self,
        event: str,
        *args: Any,
        to: Targets | None = None,
        namespace: str = "/",
        exclude: Targets | None = None,
    ) -> int:
        """Send the event ``event`` with ``args`` to every socket of ``namespace`` or to those ``to``
        names, but those ``exclude`` names, on every server (see :func:`tidings.emit`)."""
        return await self._route(emit(event, args, to, namespace, exclude, self.max_channel_length))

    async def broadcast_channel(self, message: Any, channel: str) -> int:
        """Send ``message`` to every socket in ``channel``, on every server."""
        require(check_channel_name(channel, self.max_channel_length))
        return await self._route(Send(message, channel=channel))

    async def broadcast(self, message: Any, namespace: str = "/") -> int:
        """Send ``message`` to every socket connected to ``namespace``, on every server."""
        return await self._route(Send(message, namespace=namespace))

    async def send(self, session_id: str, message: Any) -> int:
        """Send ``message`` to the socket ``session_id``; NoSocket if its server process is gone."""
        require(check_session_id(session_id))
        return await self._route(Send(message, session_id=session_id))

    async def _route(self, send: Send) -> int:
        """Route a checked ``send``: encoded before the connection opens (``TypeError`` first)."""
        count = await route(send, self._broker, self._connected)
        if isinstance(count, asyncio.Future):
            count = await count
        if not count and not isinstance(count, Buffered):  # a buffered one: nobody took it yet
            kind, name = send.target
            raise NoSocket(_NOBODY[kind].format(name))
        return count

    async def _connected(self, hand_over: HandOver, broker: Broker, send: Send) -> Count:
        await self._broker.connect()  # on first use
        return hand_over(broker, send)

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel`` on every server (see :func:`tidings.presence`); ``ValueError`` for
        a channel the servers' ``presence`` setting does not name."""
        require(check_channel_name(channel, self.max_channel_length))
        await self._broker.connect()
        if not self._broker.options.presence(channel):
            raise ValueError(f"no presence for channel {channel!r}: see the servers' presence setting")
        return await self._broker.presence(channel)

    async def aclose(self) -> None:
        await self._broker.stop()


class Publisher:
    """The blocking face of :class:`AsyncPublisher` (same arguments), with ``a``-prefixed async twins.

    Safe from any thread. Its connection lives on an event loop in a daemon thread of its own,
    started on first use; :meth:`close` (or ``with Publisher(...) as publisher:``, or
    ``async with``) ends it.
    """

    def __init__(
        self,
        url: str | None = None,
        prefix: str | None = None,
        max_channel_length: int = MAX_CHANNEL_LENGTH,
        broker_buffer: int = BROKER_BUFFER,
        broker_buffer_policy: str = BROKER_BUFFER_POLICY,
    ) -> None:
        self._publisher = AsyncPublisher(url, prefix, max_channel_length, broker_buffer, broker_buffer_policy)
        self.url = self._publisher.url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(
        self,
        event: str,
        *args: Any,
        to: Targets | None = None,
        namespace: str = "/",
        exclude: Targets | None = None,
    ) -> int:
        emitting = self._publisher.emit(event, *args, to=to, namespace=namespace, exclude=exclude)
        return self._run(emitting).result()

    async def aemit(
        self,
        event: str,
        *args: Any,
        to: Targets | None = None,
        namespace: str = "/",
        exclude: Targets | None = None,
    ) -> int:
        emitting = self._publisher.emit(event, *args, to=to, namespace=namespace, exclude=exclude)
        return await asyncio.wrap_future(self._run(emitting))

    def broadcast_channel(self, message: Any, channel: str) -> int:
        return self._run(self._publisher.broadcast_channel(message, channel)).result()

    def broadcast(self, message: Any, namespace: str = "/") -> int:
        return self._run(self._publisher.broadcast(message, namespace)).result()

    def send(self, session_id: str, message: Any) -> int:
        return self._run(self._publisher.send(session_id, message)).result()

    def presence(self, channel: str) -> list[dict[str, Any]]:
        return self._run(self._publisher.presence(channel)).result()

    async def apresence(self, channel: str) -> list[dict[str, Any]]:
        return await asyncio.wrap_future(self._run(self._publisher.presence(channel)))

    async def abroadcast_channel(self, message: Any, channel: str) -> int:
        return await asyncio.wrap_future(self._run(self._publisher.broadcast_channel(message, channel)))

    async def abroadcast(self, message: Any, namespace: str = "/") -> int:
        return await asyncio.wrap_future(self._run(self._publisher.broadcast(message, namespace)))

    async def asend(self, session_id: str, message: Any) -> int:
        return await asyncio.wrap_future(self._run(self._publisher.send(session_id, message)))

    def _route(self, send: Send) -> int:
        """A checked send: ``tidings.broadcast`` & co in a process that runs no server."""
        return self._run(self._publisher._route(send)).result()

    async def _aroute(self, send: Send) -> int:
        return await asyncio.wrap_future(self._run(self._publisher._route(send)))

    def close(self) -> None:
        """Close the connection and end the publisher's thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._publisher.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def aclose(self) -> None:
        """:meth:`close` for coroutines."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="tidings-publisher", daemon=True)
                thread.start()
                self._thread = thread
                self._loop = loop
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)


#: What :class:`NoSocket` says when no server took a send, by the kind of its target.
_NOBODY = {
    "audience": "no server has a socket in any of {}",
    "channel": "no server has a socket in channel {!r}",
    "namespace": "no server has a socket in namespace {!r}",
    "session": "no server holds session {!r}",
}
