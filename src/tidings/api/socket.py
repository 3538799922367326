"""The Socket.IO socket handlers get: a client's connection to one namespace."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable
from typing import Any, Protocol

from tidings.api.handlers import MESSAGE, Handler
from tidings.api.request import Request
from tidings.api.routing import Send, emit, route
from tidings.channels import Targets, check_channel_name, new_pid, require
from tidings.hub import Hub
from tidings.message import (
    Burst,
    FrameEncoder,
    Outgoing,
    Subscriber,
    socketio_frames,
    socketio_packets,
    wire_form,
)
from tidings.protocol.socketio import AckCallback, BaseSocket, SocketState
from tidings.settings import Settings

# Read once for deliver, which runs once per recipient of a broadcast: on Python 3.11, reading an
# Enum member off its class costs ~70 ns.
_CONNECTED = SocketState.CONNECTED


class Outbound(Protocol):
    """Where a socket's packets go: its Engine.IO session (event loop thread)."""

    def send(self, packet: str | bytes) -> None: ...

    def send_many(self, packets: list[str | bytes]) -> None: ...

    def take_burst(
        self, burst: Burst, member: Subscriber, form: Hashable, encode: FrameEncoder, namespace: str
    ) -> bool: ...


class SocketConnection(Protocol):
    """What a socket asks of the connection it belongs to (one client's Engine.IO session)."""

    @property
    def request(self) -> Request: ...

    @property
    def session(self) -> Outbound: ...

    def schedule(self, job: Callable[[], Awaitable[None]], size: int = 0) -> None:
        """Run ``job`` after the connection's jobs scheduled before it (event loop thread)."""


class SocketServer(Protocol):
    """What a socket asks of the Socket.IO server it belongs to."""

    @property
    def hub(self) -> Hub: ...

    @property
    def settings(self) -> Settings: ...

    def subscribe(self, socket: Socket, channel: str) -> str | None:
        """Add ``socket`` to ``channel`` (event loop thread); the refusal reason, if any."""

    def disconnect(self, socket: Socket, reason: str, notify_client: bool) -> None:
        """Take a connected socket out of its namespace (event loop thread)."""

    def run_handler(
        self, socket: Socket, handler: Handler, args: Iterable[Any], channels: Collection[str]
    ) -> Awaitable[Any]:
        """Run ``handler`` for ``socket`` with ``args``, as the handlers of ``channels``' events run."""


class Socket(BaseSocket):
    """A client's connection to one namespace: what handlers get as ``socket``.

    Its sending methods are safe to call from any thread: off the event loop they hand the already
    encoded packets to the loop.
    """

    __slots__ = (
        "_form",
        "_held",
        "_pid",
        "auth",
        "connection",
        "context",
        "disconnect_reason",
        "io",
        "presence_info",
        "recovered",
        "request",
        "session_id",
        "subscriptions",
    )

    def __init__(self, io: SocketServer, connection: SocketConnection, namespace: str, auth: Any) -> None:
        super().__init__(namespace)  # its state, held packets and acks: the protocol's part
        self.io = io
        self.connection = connection
        #: The connect payload the client sent (``auth`` option of the official clients).
        self.auth: Any = auth
        self.session_id = io.hub.new_session_id()
        self.request: Request = connection.request
        #: Lives as long as this connection; handlers keep their per-connection state here.
        self.context: dict[str, Any] = {}
        self.disconnect_reason: str | None = None
        #: What others see of this socket in the presence of a channel (``tidings.presence``, the
        #: ``presence`` event and notices): set it in ``on_connect`` or ``on_subscribe``.
        self.presence_info: dict[str, Any] = {}
        #: Written by the hub only (see :attr:`channels`).
        self.subscriptions: dict[str, None] = {}
        #: True for a socket that took up the state of one whose transport dropped (connection state
        #: recovery): its session id, channels, context and presence info, and what it missed.
        self.recovered = False
        # Connection state recovery: the private id its client comes back with (None: off), and the
        # hub's messages held while it is being recovered (None: not being recovered).
        self._pid = new_pid() if io.settings.connection_state_recovery is not None else None
        self._held: list[Outgoing] | None = None
        self._form = wire_form(namespace)

    @property
    def channels(self) -> frozenset[str]:
        """The channels this socket is subscribed to."""
        return frozenset(self.subscriptions)

    # -- to this socket (or, with to=, to others) ------------------------------------------------

    def emit(
        self,
        event: str,
        *args: Any,
        to: Targets | None = None,
        exclude: Targets | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """Send the Socket.IO event ``event`` with ``args`` to this socket, or to the sockets ``to``
        names; bytes anywhere in them go as binary.

        ``to``: a channel (its members, this socket too if it is in it), a session id, a socket, or a
        list of them, each socket reached once; ``exclude`` (the same kinds) leaves some out:
        ``emit("typing", name, to=channel, exclude=socket)`` reaches everyone in the channel but this
        socket. See :func:`tidings.emit`.

        ``callback``, if given, is called with the client's ack arguments (in the handler pool, as a
        ``def`` or ``async def`` handler would be); only for an emit to this socket. ``ValueError``
        for a reserved or empty event name and for bad targets.
        """
        if to is not None:
            if callback is not None:
                raise ValueError("a callback waits for one client's ack: not with to=")
            self._route(emit(event, args, to, self.namespace, exclude, self.io.settings.max_channel_length))
            return
        if exclude is not None:
            raise ValueError("exclude leaves sockets out of the ones to= names: give to= too")
        ack = None if callback is None else functools.partial(self._run_callback, Handler.of(callback))
        self._post(self._event(event, args, ack))

    def send(self, message: Any) -> None:
        """Send ``message`` (any JSON value or bytes) as the ``message`` event."""
        self.emit(MESSAGE, message)

    def call(self, event: str, *args: Any, timeout: float = 30.0) -> Any:
        """Emit ``event`` and block until the client acks it; returns the ack's argument.

        For ``def`` handlers and other threads; ``async def`` code uses :meth:`acall`. Several ack
        arguments come back as a tuple, none as None. Raises ``TimeoutError`` after ``timeout``
        seconds and ``ConnectionError`` if the socket disconnects first.
        """
        if self.io.hub.in_loop_thread():
            raise RuntimeError("Socket.call() blocks; use 'await socket.acall()' on the event loop")
        future: concurrent.futures.Future[list[Any] | None] = concurrent.futures.Future()
        self._emit_with_ack(event, args, future.set_result)
        try:
            return _ack_result(future.result(timeout))
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no ack for {event!r} within {timeout}s") from None

    async def acall(self, event: str, *args: Any, timeout: float = 30.0) -> Any:
        """Emit ``event`` and wait for the client's ack; the ``async`` twin of :meth:`call`."""
        future: asyncio.Future[list[Any] | None] = asyncio.get_running_loop().create_future()

        def resolve(result: list[Any] | None) -> None:
            if not future.done():
                future.set_result(result)

        self._emit_with_ack(event, args, resolve)
        try:
            return _ack_result(await asyncio.wait_for(future, timeout))
        except asyncio.TimeoutError:
            raise TimeoutError(f"no ack for {event!r} within {timeout}s") from None

    def disconnect(self) -> None:
        """Disconnect this socket from its namespace; the client is told and will not reconnect."""
        self.io.hub.post(self.io.disconnect, self, "server namespace disconnect", True)

    # -- to other sockets: the seeds' names, each one route (tidings.api.routing) posted to the loop --

    def broadcast(self, message: Any) -> None:
        """Send ``message`` to every other socket of this namespace."""
        self._to_namespace(message, self)

    def send_and_broadcast(self, message: Any) -> None:
        """Send ``message`` to every socket of this namespace, this one included."""
        self._to_namespace(message, None)

    def broadcast_channel(self, message: Any, channel: str | None = None) -> None:
        """Send ``message`` to the other sockets in ``channel``, or in each channel this socket is in.

        Recipients get the ``message`` event with the channel as its second argument. Any channel may
        be named, this socket's or not (the server decides); ``ValueError`` for a name over the limits.
        """
        self._to_channels(message, channel, self)

    def send_and_broadcast_channel(self, message: Any, channel: str | None = None) -> None:
        """:meth:`broadcast_channel`, this socket included (if it is in the channel)."""
        self._to_channels(message, channel, None)

    def _to_namespace(self, message: Any, exclude: Socket | None) -> None:
        self._route(Send(message, namespace=self.namespace, exclude=exclude))

    def _to_channels(self, message: Any, channel: str | None, exclude: Socket | None) -> None:
        if channel is not None:
            require(check_channel_name(channel, self.io.settings.max_channel_length))
        for name in [channel] if channel is not None else list(self.subscriptions):
            self._route(Send(message, channel=name, namespace=self.namespace, exclude=exclude))

    def _route(self, send: Send) -> None:
        hub = self.io.hub
        route(send, hub.broker, hub.post)

    # -- channels, server side --------------------------------------------------------------------

    def subscribe(self, channel: str) -> None:
        """Subscribe this socket to ``channel`` (no ``subscribe`` handlers run: the server decided).

        Raises ``ValueError`` for a channel name over the limits or a socket at ``max_channels``.
        """
        hub = self.io.hub
        refusal = hub.call(self.io.subscribe, self, channel)
        if refusal is not None:
            raise ValueError(refusal)
        if hub.broker.remote and hub.loop is not None and not hub.in_loop_thread():  # in effect on return
            asyncio.run_coroutine_threadsafe(hub.broker.ready(), hub.loop).result(hub.call_timeout)

    def unsubscribe(self, channel: str) -> None:
        """Take this socket out of ``channel`` (no ``unsubscribe`` handlers run)."""
        self.io.hub.call(self.io.hub.unsubscribe, self, channel)

    # -- the hub's side ----------------------------------------------------------------------------

    def deliver(self, outgoing: Outgoing) -> None:
        """Queue a hub message on this connection (event loop thread); hold it while the socket is
        being recovered."""
        if self._state is not _CONNECTED:
            if self._held is not None:
                self._held.append(outgoing)
            return
        packets = outgoing.encodings.get(self._form) or outgoing.encoded(
            self._form, socketio_packets, self.namespace
        )
        session = self.connection.session
        if len(packets) == 1:
            session.send(packets[0])
        else:
            session.send_many(packets)

    def take_burst(self, burst: Burst) -> bool:
        """Take a channel's messages of this loop iteration in one write (WebSocket sessions)."""
        if self._state is not _CONNECTED:
            return False
        return self.connection.session.take_burst(burst, self, self._form, socketio_frames, self.namespace)

    def packets(self, outgoing: Outgoing) -> list[str | bytes]:
        """A hub message as this socket's packets (encoded once for every socket of its namespace)."""
        return outgoing.encoded(self._form, socketio_packets, self.namespace)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], resolve: AckCallback) -> None:
        self._post(self._event(event, args, resolve))

    def _run_callback(self, handler: Handler, args: list[Any] | None) -> None:
        if args is not None:
            self.connection.schedule(lambda: self.io.run_handler(self, handler, args, self.channels))

    def _post(self, packets: list[str | bytes]) -> None:
        self.io.hub.post(self._deliver, packets)

    def _deliver(self, packets: list[str | bytes]) -> None:
        if self._state is SocketState.CONNECTED:
            self.connection.session.send_many(packets)
        elif self._state is SocketState.CONNECTING:
            self._pending.append(packets)

    def __repr__(self) -> str:
        return f"<Socket {self.session_id} {self.namespace} {self._state.value}>"


def _ack_result(args: list[Any] | None) -> Any:
    if args is None:
        raise ConnectionError("socket disconnected before the ack")
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)
