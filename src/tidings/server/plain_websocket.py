"""Plain WebSocket connections as endpoints get them: the seed's blocking ``receive()`` / ``send()``
loop, and its async twin (:mod:`tidings.server.endpoints` runs the endpoints)::

    @tidings.websocket("/ws")
    def echo(ws):                                 # its own thread: blocking calls are fine
        while (message := ws.receive()) is not None:
            ws.send("Message received: " + message)

One implementation, :class:`AsyncWebSocket`, lives on the event loop; :class:`WebSocket` is its
blocking face for ``def`` handlers and WSGI apps (``environ["wsgi.websocket"]``, the convention of
gevent-websocket), each call handed to the loop and waited for. A reader task takes incoming
messages into a bounded inbox, so a handler that does not read slows its client down (TCP
backpressure) instead of growing memory; outgoing frames, the handler's own and channel broadcasts,
go through an :class:`~tidings.server.outbox.Outbox`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from tidings.api.request import Request
from tidings.channels import check_subscription
from tidings.hub import Hub
from tidings.message import RAW, Burst, Outgoing, raw_frame
from tidings.protocol.websocket import (
    GOING_AWAY,
    MESSAGE_TOO_BIG,
    NO_STATUS,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
)
from tidings.server.outbox import Outbox, direct_send
from tidings.server.responses import Receive, Scope, Send
from tidings.settings import Settings

logger = logging.getLogger("tidings.websocket")

T = TypeVar("T")


class State(enum.Enum):
    CONNECTING = "connecting"  # the handler has not sent or received yet: the upgrade is not answered
    OPEN = "open"
    CLOSED = "closed"


class AsyncWebSocket:
    """A plain WebSocket connection as ``async def`` endpoints get it (``await ws.receive()``).

    The upgrade is accepted on the first :meth:`receive` or :meth:`send`. Also a hub subscriber:
    :meth:`subscribe` puts it in channels, whose messages arrive as frames (text as text, bytes as
    binary, other JSON values as JSON text).
    """

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, hub: Hub, settings: Settings, group: str
    ) -> None:
        self.request = Request(scope)
        #: What :func:`tidings.send` takes to reach this connection.
        self.session_id = hub.new_session_id()
        #: Written by the hub only (see :attr:`channels`).
        self.subscriptions: dict[str, None] = {}
        #: The close code once closed (by either side), and its reason.
        self.close_code: int | None = None
        self.close_reason = ""
        self.state = State.CONNECTING
        self._receive = receive
        self._send = send
        self._hub = hub
        self._settings = settings
        self._group = group
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(settings.websocket_max_queue)
        self._outbox = Outbox(settings.max_buffer, lambda: self._closed(GOING_AWAY, "transport error"))
        self._reader: asyncio.Task[None] | None = None
        self._direct = direct_send(scope)

    @property
    def channels(self) -> frozenset[str]:
        """The channels this connection is subscribed to."""
        return frozenset(self.subscriptions)

    async def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message (``str`` or ``bytes``); None once the connection is closed.

        Raises ``TimeoutError`` if nothing came within ``timeout`` seconds.
        """
        self._accept()
        if self.state is State.CLOSED and self._inbox.empty():
            return None
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no message within {timeout}s") from None

    async def send(self, data: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message; returns once it is written.

        Raises ``ConnectionError`` if the connection is closed.
        """
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        self._accept()
        if self.state is State.CLOSED:
            raise ConnectionError(f"WebSocket closed ({self.close_code})")
        if not self._outbox.put(data):
            self.close_soon(POLICY_VIOLATION, "send buffer full")
            raise ConnectionError("WebSocket closed: send buffer full")
        await self._outbox.flush()

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection (after what is queued) and wait until the close frame is written."""
        self.close_soon(code, reason)
        await self._outbox.flush()

    def close_soon(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close without waiting (event loop thread)."""
        if self.state is State.OPEN:
            self._outbox.close(code, reason)
        self._closed(code, reason)

    def subscribe(self, channel: str) -> None:
        """Receive the messages broadcast to ``channel`` (event loop thread).

        Raises ``ValueError`` for a channel name over the limits or a connection at ``max_channels``.
        """
        settings = self._settings
        refusal = check_subscription(self, channel, settings.max_channels, settings.max_channel_length)
        if refusal is None and self.state is State.CLOSED:
            refusal = "the WebSocket is closed"
        if refusal is not None:
            raise ValueError(refusal)
        self._accept()
        self._hub.subscribe(self, channel)

    def unsubscribe(self, channel: str) -> None:
        self._hub.unsubscribe(self, channel)

    # -- the hub's side ------------------------------------------------------------------------------

    def deliver(self, outgoing: Outgoing) -> None:
        if self.state is not State.OPEN:
            return
        try:
            frame = outgoing.encoded(RAW, raw_frame)
        except TypeError as error:  # bytes inside a JSON value: no plain frame can carry it
            logger.error("channel message cannot go on a plain WebSocket: %s", error)
            return
        if not self._outbox.put(frame):
            self.close_soon(POLICY_VIOLATION, "send buffer full")

    def take_burst(self, burst: Burst) -> bool:
        """No: a message that JSON cannot carry as a plain frame is skipped with an error logged,
        one by one in :meth:`deliver`; a burst encodes its messages together."""
        return False

    # -- the connection --------------------------------------------------------------------------

    def _accept(self) -> None:
        if self.state is not State.CONNECTING:
            return
        self.state = State.OPEN
        self._outbox.attach(self._send, accept=True, direct=self._direct)
        self._hub.join(self, self._group)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        max_payload = self._settings.max_payload
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self._closed(message.get("code", NO_STATUS), message.get("reason") or "")
                if not self._inbox.full():
                    self._inbox.put_nowait(None)  # wakes a waiting receive()
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if self.state is State.CLOSED:
                continue  # closing: wait for the disconnect that follows our close frame
            if len(data) > max_payload:
                self.close_soon(MESSAGE_TOO_BIG, "message too big")
                continue
            await self._inbox.put(data)

    def _closed(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_code, self.close_reason = code, reason
        self._hub.leave(self, self._group)

    async def _finish(self) -> None:
        """After the handler returned: close if still open, and let the reader see the disconnect."""
        if self.state is not State.CLOSED:
            await self.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, self._settings.ping_timeout)
            except Exception:  # the peer never answered our close frame
                self._reader.cancel()

    def __repr__(self) -> str:
        return f"<AsyncWebSocket {self.session_id} {self.request.path} {self.state.value}>"


class WebSocket:
    """The blocking face of :class:`AsyncWebSocket`, for ``def`` endpoints and WSGI apps.

    Each call is handed to the event loop and waited for, so the thread that makes it just sleeps
    meanwhile: an idle endpoint holds one parked thread and nothing runs for it.
    """

    def __init__(self, connection: AsyncWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.connection = connection
        self._loop = loop

    @property
    def request(self) -> Request:
        return self.connection.request

    @property
    def session_id(self) -> str:
        return self.connection.session_id

    @property
    def channels(self) -> frozenset[str]:
        return self.connection.channels

    @property
    def closed(self) -> bool:
        return self.connection.state is State.CLOSED

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Block for the next message (``str`` or ``bytes``); None once the connection is closed."""
        return self._wait(self.connection.receive(timeout))

    def send(self, data: str | bytes) -> None:
        """Send a text or binary message; blocks until it is written."""
        self._wait(self.connection.send(data))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        self._wait(self.connection.close(code, reason))

    def subscribe(self, channel: str) -> None:
        """Receive the messages broadcast to ``channel``; raises ``ValueError`` past the limits.

        Returns once the subscription is in effect (with a remote broker: once Redis confirmed it).
        """
        hub = self.connection._hub
        hub.call(self.connection.subscribe, channel)
        if hub.broker.remote:
            self._wait(hub.broker.ready())

    def unsubscribe(self, channel: str) -> None:
        self.connection._hub.call(self.connection.unsubscribe, channel)

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __repr__(self) -> str:
        return f"<WebSocket {self.session_id} {self.request.path} {self.connection.state.value}>"
