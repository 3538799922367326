"""Socket.IO v5 server over Engine.IO sessions: namespaces, events, acks, channels, lifecycle events.

Spec: https://socket.io/docs/v4/socket-io-protocol/. Packet rules live in
:mod:`tidings.protocol.socketio`; who is in which channel lives in :mod:`tidings.hub`; this module keeps
the state of connections and runs handlers.

Handlers of one connection run one after another, in the order their packets arrived, from a
per-connection job queue whose worker task exists only while there is work. ``def`` handlers run in a
thread pool, ``async def`` handlers on the event loop.

Channels on the wire are ordinary events, so any Socket.IO client can use them:
``emit("subscribe", channel)`` / ``emit("unsubscribe", channel)`` (acked with ``{"ok": true}`` or
``{"ok": false, "error": reason}``), ``emit("message", message[, channel])`` to send (to a channel
the socket is in, unless a handler takes messages from non-members), and the ``message`` event with
``(message[, channel])`` to receive; a message of a channel with history has a third argument, its
position ``{"offset": n, "epoch": e}``, and ``emit("subscribe", channel, {"since": position})``
recovers what followed it. ``emit("presence", channel)`` asks who is in a channel with presence;
``join`` and ``leave`` events tell its members.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime
import enum
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from tidings.brokers import Broker, BrokerError
from tidings.brokers.history import NO_HISTORY, ChannelOptions, HistoryRule, Position
from tidings.hub import CALL_TIMEOUT, Hub, Outgoing, check_channel_name, check_subscription, require
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol import socketio as sio
from tidings.protocol.websocket import PROTOCOL_ERROR
from tidings.server.config import Settings
from tidings.server.engine import Session
from tidings.server.handlers import (
    CONNECT,
    DISCONNECT,
    ERROR,
    FINISH,
    LIFECYCLE,
    MESSAGE,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Handler,
    Handlers,
    Refuse,
)
from tidings.server.request import Request

logger = logging.getLogger("tidings.socketio")
message_logger = logging.getLogger("tidings.messages")

#: The event a client emits to ask who is in a channel (only when the ``presence`` setting is on).
PRESENCE = "presence"

Job = Callable[[], Awaitable[None]]
#: Jobs a connection's worker runs before it lets the event loop serve the others: a client whose
#: events are handled without waiting (refused, or by async handlers that do not await) must not
#: hold the loop for a whole read's worth of them.
JOBS_PER_TURN = 16
AckCallback = Callable[[list[Any] | None], None]  # None: the socket went before the ack came


def encode(packet: sio.Packet) -> list[str | bytes]:
    """A Socket.IO packet as the Engine.IO packets that carry it (text MESSAGE, then attachments)."""
    text, *attachments = sio.encode(packet)
    assert isinstance(text, str)
    return [eio.message(text), *attachments]


def wire_form(namespace: str) -> tuple[str, str]:
    """The key under which an :class:`Outgoing` caches its Socket.IO encoding for ``namespace``."""
    return ("socket.io", namespace)


def _message_packets(outgoing: Outgoing, namespace: str) -> list[str | bytes]:
    if outgoing.event is not None:  # Server.emit: the event with its arguments
        args = [outgoing.event, *outgoing.message]
    else:
        args = [MESSAGE, outgoing.message]
        if outgoing.channel is not None:
            args.append(outgoing.channel)
            if outgoing.position is not None:
                args.append(outgoing.position.wire())
    return encode(sio.Packet(sio.PacketType.EVENT, namespace, args))


def prepare(outgoing: Outgoing, namespace: str, broker: Broker) -> Outgoing:
    """Encode ``outgoing`` now, in the calling thread, for the trip ``broker`` sends it on.

    A message JSON cannot hold raises ``TypeError`` here, at the caller. With the memory broker the
    Socket.IO packets for ``namespace`` are built, so the event loop is left only the writes for the
    (usual) case that every recipient is in that namespace; a remote broker encodes its envelope.
    """
    if broker.remote:
        broker.prepare(outgoing)
    else:
        outgoing.encoded(wire_form(namespace), _message_packets, namespace)
    return outgoing


def _ack_args(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


class SocketState(enum.Enum):
    CONNECTING = "connecting"  # connect handlers running; what it emits waits for CONNECT
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class Socket:
    """A client's connection to one namespace: what handlers get as ``socket``.

    Its sending methods are safe to call from any thread: off the event loop they hand the already
    encoded packets to the loop.
    """

    __slots__ = (
        "_ack_ids",
        "_acks",
        "_form",
        "_pending",
        "_state",
        "auth",
        "connection",
        "context",
        "disconnect_reason",
        "io",
        "namespace",
        "presence_info",
        "request",
        "session_id",
        "subscriptions",
    )

    def __init__(self, io: SocketIO, connection: Connection, namespace: str, auth: Any) -> None:
        self.io = io
        self.connection = connection
        self.namespace = namespace
        #: The connect payload the client sent (``auth`` option of the official clients).
        self.auth: Any = auth
        self.session_id = io.hub.new_session_id()
        self.request: Request = connection.request
        #: Lives as long as this connection; handlers keep their per-connection state here.
        self.context: dict[str, Any] = {}
        self.disconnect_reason: str | None = None
        #: What others see of this socket in the presence of a channel (``tidings.presence``, the
        #: ``presence`` event, ``join``/``leave``): set it in ``on_connect`` or ``on_subscribe``.
        self.presence_info: dict[str, Any] = {}
        #: Written by the hub only (see :attr:`channels`).
        self.subscriptions: dict[str, None] = {}
        self._form = wire_form(namespace)
        self._state = SocketState.CONNECTING
        self._pending: list[list[str | bytes]] = []
        self._acks: dict[int, AckCallback] = {}
        self._ack_ids = itertools.count()

    @property
    def connected(self) -> bool:
        return self._state is SocketState.CONNECTED

    @property
    def channels(self) -> frozenset[str]:
        """The channels this socket is subscribed to."""
        return frozenset(self.subscriptions)

    # -- to this socket ----------------------------------------------------------------------------

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        """Send the Socket.IO event ``event`` with ``args``; bytes anywhere in them go as binary.

        ``callback``, if given, is called with the client's ack arguments (in the handler pool, as a
        ``def`` or ``async def`` handler would be).
        """
        ack_id = None
        if callback is not None:
            handler = Handler.of(callback)
            ack_id = self._add_ack(lambda args: self._run_callback(handler, args))
        self._post(encode(sio.Packet(sio.PacketType.EVENT, self.namespace, [event, *args], ack_id)))

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

    # -- to other sockets (the seeds' methods) ----------------------------------------------------

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
        hub = self.io.hub
        broker = hub.broker
        outgoing = prepare(Outgoing(message), self.namespace, broker)
        hub.post(broker.broadcast, outgoing, self.namespace, exclude)

    def _to_channels(self, message: Any, channel: str | None, exclude: Socket | None) -> None:
        hub = self.io.hub
        broker = hub.broker
        if channel is not None:
            require(check_channel_name(channel, self.io.settings.max_channel_length))
        for name in [channel] if channel is not None else list(self.subscriptions):
            hub.post(broker.publish, prepare(Outgoing(message, name), self.namespace, broker), exclude)

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
            asyncio.run_coroutine_threadsafe(hub.broker.ready(), hub.loop).result(CALL_TIMEOUT)

    def unsubscribe(self, channel: str) -> None:
        """Take this socket out of ``channel`` (no ``unsubscribe`` handlers run)."""
        self.io.hub.call(self.io.hub.unsubscribe, self, channel)

    # -- the hub's side ----------------------------------------------------------------------------

    def deliver(self, outgoing: Outgoing) -> None:
        """Queue a hub message on this connection (event loop thread)."""
        if self._state is not SocketState.CONNECTED:
            return
        packets = outgoing.encoded(self._form, _message_packets, self.namespace)
        session = self.connection.session
        if len(packets) == 1:
            session.send(packets[0])
        else:
            session.send_many(packets)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], resolve: AckCallback) -> None:
        ack_id = self._add_ack(resolve)
        self._post(encode(sio.Packet(sio.PacketType.EVENT, self.namespace, [event, *args], ack_id)))

    def _add_ack(self, callback: AckCallback) -> int:
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = callback
        return ack_id

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


class Connection:
    """The Socket.IO side of one Engine.IO session: its sockets, decoder and job queue."""

    __slots__ = (
        "_attachment_timer",
        "_connect_timer",
        "_holding",
        "_incoming",
        "_jobs",
        "_pending_bytes",
        "_settings",
        "_worker",
        "decoder",
        "request",
        "session",
        "sockets",
    )

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.request = Request(session.scope)
        self.decoder = sio.Decoder(
            settings.max_attachments,
            settings.max_binary_size,
            settings.attachment_timeout,
            asyncio.get_running_loop().time,
        )
        self.sockets: dict[str, Socket] = {}
        self._settings = settings
        # Created when a job comes and dropped when the queue runs dry: an empty deque holds a
        # 64-slot block (~0.7 KiB), too much for each of many idle connections. Each job with the
        # bytes of the client's messages it holds.
        self._jobs: deque[tuple[Job, int]] | None = None
        self._pending_bytes = 0  # of the jobs queued
        self._holding = False  # the session takes no messages until the queue is half as long
        self._incoming = 0  # bytes of the messages of the packet being decoded
        self._worker: asyncio.Task[None] | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._attachment_timer: asyncio.TimerHandle | None = None

    def schedule(self, job: Job, size: int = 0) -> None:
        """Run ``job`` after every job scheduled before it on this connection; ``size``: the bytes
        of the client's messages it holds.

        Once ``max_pending_events`` jobs or ``max_pending_bytes`` wait, the session stops taking
        the client's messages until the queue is half as long, so a client that sends faster than
        its handlers run is slowed down instead of growing the queue without end.
        """
        if self._jobs is None:
            self._jobs = deque()
        self._jobs.append((job, size))
        self._pending_bytes += size
        settings = self._settings
        if not self._holding and (
            len(self._jobs) >= settings.max_pending_events
            or self._pending_bytes >= settings.max_pending_bytes
        ):
            self._holding = True
            self.session.hold_reading()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(self._jobs))

    async def _work(self, jobs: deque[tuple[Job, int]]) -> None:
        settings = self._settings
        ran = 0
        try:
            while jobs:
                job, size = jobs.popleft()
                self._pending_bytes -= size
                if (
                    self._holding
                    and len(jobs) <= settings.max_pending_events // 2
                    and self._pending_bytes <= settings.max_pending_bytes // 2
                ):
                    self._holding = False
                    self.session.release_reading()
                try:
                    await job()
                except Exception:  # handlers' own errors are caught inside jobs; this is a bug
                    logger.exception("connection job failed")
                ran += 1
                if ran % JOBS_PER_TURN == 0 and jobs:
                    await asyncio.sleep(0)  # let the loop serve the other connections
        finally:
            self._worker = None
            self._jobs = None  # no await since the queue ran dry: nothing was added meanwhile

    def watch_attachments(self) -> None:
        """Keep a timer for the deadline of the binary packet the decoder holds, if any."""
        deadline = self.decoder.deadline
        if deadline is None:
            if self._attachment_timer is not None:
                self._attachment_timer.cancel()
                self._attachment_timer = None
        elif self._attachment_timer is None:
            loop = asyncio.get_running_loop()
            self._attachment_timer = loop.call_at(deadline, self._attachments_due)

    def _attachments_due(self) -> None:
        self._attachment_timer = None
        try:
            self.decoder.check_deadline()
        except ProtocolError as error:
            logger.info("session %s: protocol error: %s", self.session.sid, error)
            self.session.close(str(error), PROTOCOL_ERROR)
        else:  # a timer may fire a hair before the loop's clock reaches it
            self.watch_attachments()


class SocketIO:
    """Socket.IO state of a server: connections, namespaces, handler execution."""

    def __init__(
        self,
        settings: Settings,
        handlers: Handlers,
        namespaces: Iterable[str] | str | None,
        broker: Broker | None = None,
    ) -> None:
        self.settings = settings
        self.handlers = handlers
        self._namespaces: set[str] | str | None
        if namespaces is None or namespaces == "*":
            self._namespaces = namespaces
        elif isinstance(namespaces, str):
            self._namespaces = {"/", namespaces}
        else:
            self._namespaces = {"/", *namespaces}
        self.hub = Hub(broker)
        self.hub.max_channel_length = settings.max_channel_length
        self.hub.configure(ChannelOptions(settings.history, settings.presence, settings.presence_timeout))
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- running handlers --------------------------------------------------------------------------

    async def invoke(self, handler: Handler, *args: Any) -> Any:
        if handler.is_async:
            return await handler.func(*args)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.settings.handler_threads, thread_name_prefix="tidings-handler"
            )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, handler.func, *args)

    async def run_handler(
        self,
        socket: Socket,
        handler: Handler,
        args: Iterable[Any],
        channels: Collection[str],
        refusable: bool = False,
    ) -> Any:
        """Run one handler as ``func(request, socket, context, *args)``.

        An exception is logged with its traceback and handed to the ``error`` handlers that match
        ``channels``; the connection goes on and the result is None. If ``refusable``, a
        :class:`Refuse` is raised on instead: the handler refused what the client asked for.
        """
        try:
            return await self.invoke(handler, socket.request, socket, socket.context, *args)
        except Exception as error:
            if refusable and isinstance(error, Refuse):
                raise
            logger.exception("handler %s raised", _name(handler))
            await self._run_error_handlers(socket, error, channels)
            return None

    async def _run_error_handlers(self, socket: Socket, error: Exception, channels: Collection[str]) -> None:
        for handler in self.handlers.get(socket.namespace, ERROR):
            if handler.matches(channels):
                try:
                    await self.invoke(handler, socket.request, socket, socket.context, error)
                except Exception:  # not handed to error handlers again: that could loop
                    logger.exception("error handler %s raised", _name(handler))

    async def _run_answering(
        self, socket: Socket, calls: Iterable[tuple[Handler, Iterable[Any]]], channels: Collection[str]
    ) -> Any:
        """Run the handlers of one client event with their arguments, in order, for its ack: the first
        result that is not None, or the refusal of a handler that raised :class:`Refuse` (the
        handlers after it do not run)."""
        result = None
        for handler, args in calls:
            try:
                value = await self.run_handler(socket, handler, args, channels, refusable=True)
            except Refuse as refused:
                return _answer(refused.reason)
            if result is None:
                result = value
        return result

    async def _fire(self, socket: Socket, event: str, channels: Collection[str], *args: Any) -> None:
        """Run the lifecycle handlers of ``event`` that match ``channels``."""
        for handler in self.handlers.get(socket.namespace, event):
            if handler.matches(channels):
                await self.run_handler(socket, handler, args, channels)

    def shutdown(self) -> None:
        self.hub.unbind()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- engine events ---------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.hub.bind_loop()
        connection = Connection(session, self.settings)
        session.data = connection
        connection._connect_timer = asyncio.get_running_loop().call_later(
            self.settings.connect_timeout, self._connect_timed_out, connection
        )

    def _connect_timed_out(self, connection: Connection) -> None:
        if not connection.sockets:
            connection.session.close("connect timeout")

    def message_received(self, session: Session, data: str | bytes) -> None:
        connection: Connection = session.data
        decoder = connection.decoder
        connection._incoming += len(data)
        if isinstance(data, str):
            packet = decoder.receive_text(data)
            if packet is None:  # a binary packet's text part: its attachments are due
                connection.watch_attachments()
                return
        else:
            packet = decoder.receive_binary(data)
            connection.watch_attachments()  # the last attachment is in, or one more
            if packet is None:
                return
        size, connection._incoming = connection._incoming, 0
        socket = connection.sockets.get(packet.namespace)
        match packet.type:
            case sio.PacketType.CONNECT:
                if socket is None:
                    self._connect(connection, packet)
            case sio.PacketType.EVENT:
                if socket is not None and socket._state is SocketState.CONNECTED:
                    connection.schedule(lambda: self._run_event(socket, packet), size)
            case sio.PacketType.ACK:
                if socket is not None and packet.id is not None:
                    callback = socket._acks.pop(packet.id, None)
                    if callback is not None:
                        callback(packet.data)
            case sio.PacketType.DISCONNECT:
                if socket is not None:
                    self.disconnect(socket, "client namespace disconnect", False)
            case _:
                raise ProtocolError(f"unexpected {packet.type.name} packet from a client")

    def session_closed(self, session: Session, reason: str) -> None:
        connection: Connection = session.data
        if connection._connect_timer is not None:
            connection._connect_timer.cancel()
        if connection._attachment_timer is not None:
            connection._attachment_timer.cancel()
        for socket in list(connection.sockets.values()):
            if socket._state is SocketState.CONNECTING:
                socket._state = SocketState.DISCONNECTED
            else:
                self.disconnect(socket, reason, False)

    # -- namespace connect and disconnect (SIO §"Connection to a namespace") --------------------

    def _accepts(self, namespace: str) -> bool:
        if self._namespaces == "*":
            return True
        if self._namespaces is None:
            return namespace in self.handlers.namespaces
        return namespace in self._namespaces

    def _connect(self, connection: Connection, packet: sio.Packet) -> None:
        namespace = packet.namespace
        refusal = None
        if not self._accepts(namespace):
            refusal = "Invalid namespace"
        elif len(connection.sockets) >= self.settings.max_namespaces:
            refusal = "too many namespaces"
        if refusal is not None:
            error = {"message": refusal}
            connection.session.send_many(encode(sio.Packet(sio.PacketType.CONNECT_ERROR, namespace, error)))
            return
        if connection._connect_timer is not None:
            connection._connect_timer.cancel()
            connection._connect_timer = None
        socket = Socket(self, connection, namespace, packet.data if packet.data is not None else {})
        connection.sockets[namespace] = socket
        connection.schedule(lambda: self._run_connect(socket))

    async def _run_connect(self, socket: Socket) -> None:
        try:
            for handler in self.handlers.get(socket.namespace, CONNECT):
                await self.invoke(handler, socket.request, socket, socket.context)
        except Refuse as refusal:
            self._refuse(socket, refusal.reason, refusal.data)
        except Exception as error:
            logger.exception("connect handler raised; connection refused")
            self._refuse(socket, "Internal server error", None)
            await self._run_error_handlers(socket, error, ())
        else:
            if socket._state is SocketState.CONNECTING:
                self._connected(socket)
                return
        # Refused, or the session ended while the connect handlers ran: the socket is over.
        socket._state = SocketState.DISCONNECTED
        await self._fire(socket, FINISH, ())

    def _connected(self, socket: Socket) -> None:
        socket._state = SocketState.CONNECTED
        self.hub.join(socket, socket.namespace)
        session = socket.connection.session
        reply = sio.Packet(sio.PacketType.CONNECT, socket.namespace, {"sid": socket.session_id})
        session.send_many(encode(reply))
        for packets in socket._pending:
            session.send_many(packets)
        socket._pending.clear()

    def _refuse(self, socket: Socket, reason: str, data: Any) -> None:
        socket._state = SocketState.DISCONNECTED
        socket._pending.clear()
        socket.connection.sockets.pop(socket.namespace, None)
        error: dict[str, Any] = {"message": reason}
        if data is not None:
            error["data"] = data
        try:
            packets = encode(sio.Packet(sio.PacketType.CONNECT_ERROR, socket.namespace, error))
        except TypeError as problem:
            logger.error("Refuse data cannot be sent (%s); refusing without it", problem)
            packets = encode(sio.Packet(sio.PacketType.CONNECT_ERROR, socket.namespace, {"message": reason}))
        socket.connection.session.send_many(packets)

    def disconnect(self, socket: Socket, reason: str, notify_client: bool) -> None:
        """Take a connected socket out of its namespace and channels; run its ending handlers."""
        if socket._state is not SocketState.CONNECTED:
            return
        socket._state = SocketState.DISCONNECTED
        socket.disconnect_reason = reason
        socket.connection.sockets.pop(socket.namespace, None)
        channels = self.hub.leave(socket, socket.namespace)
        acks, socket._acks = socket._acks, {}
        for callback in acks.values():
            callback(None)
        if notify_client:
            packet = sio.Packet(sio.PacketType.DISCONNECT, socket.namespace)
            socket.connection.session.send_many(encode(packet))
        socket.connection.schedule(lambda: self._run_ending(socket, channels))

    async def _run_ending(self, socket: Socket, channels: list[str]) -> None:
        """The seeds' order: disconnect, then unsubscribe from each channel it was in, then finish."""
        await self._fire(socket, DISCONNECT, channels)
        for channel in channels:
            await self._fire(socket, UNSUBSCRIBE, (channel,), channel)
        await self._fire(socket, FINISH, channels)

    # -- events ----------------------------------------------------------------------------------

    async def _run_event(self, socket: Socket, packet: sio.Packet) -> None:
        event, *args = packet.data
        if event == MESSAGE:
            result = await self._run_message(socket, args)
        elif event == SUBSCRIBE:
            result = await self._run_subscribe(socket, args)
        elif event == UNSUBSCRIBE:
            result = await self._run_unsubscribe(socket, args)
        elif event == PRESENCE and self.settings.presence:
            result = await self._run_presence(socket, args)
        else:
            handlers = [] if event in LIFECYCLE else self.handlers.get(socket.namespace, event)
            if not handlers:
                logger.debug("no handler for event %r in %s", event, socket.namespace)
                return
            result = await self._run_answering(
                socket, [(handler, args) for handler in handlers], socket.channels
            )
        if packet.id is not None and socket._state is SocketState.CONNECTED:
            socket.connection.session.send_many(_ack_packets(socket.namespace, packet.id, result, event))

    async def _run_message(self, socket: Socket, args: list[Any]) -> Any:
        """``emit("message", message[, channel])``: the ``message`` handlers that match, in order.

        A message addressed to a channel the socket is not in runs only the handlers that take
        messages from non-members; if none matches, it is refused, as one to a bad channel name is.
        """
        if len(args) not in (1, 2) or (len(args) == 2 and not isinstance(args[1], str)):
            logger.info("socket %s: malformed message event ignored", socket.session_id)
            return {"ok": False, "error": "expected (message) or (message, channel)"}
        message = args[0]
        channel: str | None = args[1] if len(args) == 2 else None
        if self.settings.message_log_format is not None:
            self._log_message(socket, message, channel)
        handlers = self.handlers.get(socket.namespace, MESSAGE)
        channels: Collection[str]
        if channel is None:
            channels = socket.channels
        else:
            refusal = check_channel_name(channel, self.settings.max_channel_length)
            if refusal is not None:
                return _answer(refusal)
            channels = (channel,)
            if channel not in socket.subscriptions:
                handlers = [handler for handler in handlers if not handler.members_only]
                if not any(handler.matches(channels) for handler in handlers):
                    return _answer(f"not subscribed to {channel!r}")
        calls = [
            (handler, (message, channel) if handler.takes_channel else (message,))
            for handler in handlers
            if handler.matches(channels)
        ]
        return await self._run_answering(socket, calls, channels)

    async def _run_subscribe(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """The client asks to join a channel: the ``subscribe`` handlers may refuse it first."""
        channel = args[0] if args else None
        settings = self.settings
        refusal = check_subscription(socket, channel, settings.max_channels, settings.max_channel_length)
        if refusal is not None or channel in socket.subscriptions:
            return _answer(refusal)
        assert isinstance(channel, str)
        options = args[1] if len(args) > 1 else None
        since = None
        recovering = isinstance(options, dict) and options.get("since") is not None
        if recovering:
            assert isinstance(options, dict)
            since = Position.parse(options["since"])
            if since is None:
                return _answer('since must be {"offset": int, "epoch": str}')
        try:
            for handler in self.handlers.get(socket.namespace, SUBSCRIBE):
                if handler.matches((channel,)):
                    await self.invoke(handler, socket.request, socket, socket.context, channel)
        except Refuse as refused:
            return _answer(refused.reason)
        except Exception as error:
            logger.exception("subscribe handler raised; subscription refused")
            await self._run_error_handlers(socket, error, (channel,))
            return _answer("Internal server error")
        hub = self.hub
        rule = hub.options.history(channel) if hub.options.any else None
        if rule is not None:
            hub.begin_catch_up(socket, channel)  # live messages wait until the history is read
        refusal = self.subscribe(socket, channel)
        if refusal is None and hub.broker.remote:
            await hub.broker.ready()  # in effect on every node before the client hears so
        if refusal is not None or rule is None:
            if rule is not None:
                hub.end_catch_up(socket, channel, None)
            answer = _answer(refusal)
            if refusal is None and recovering:
                answer.update(recovered=False, reason=NO_HISTORY)
            return answer
        return await self._recover(socket, channel, rule, since, recovering)

    async def _recover(
        self, socket: Socket, channel: str, rule: HistoryRule, since: Position | None, recovering: bool
    ) -> dict[str, Any]:
        """Read ``channel``'s history (after ``since``), hand over what was missed and what came
        meanwhile, in order, with no duplicates; the answer says where the socket is now."""
        hub = self.hub
        try:
            recovery = await hub.broker.recover(channel, rule, since)
        except BrokerError as error:
            logger.warning(
                "socket %s: the history of %r cannot be read: %s", socket.session_id, channel, error
            )
            for outgoing in hub.end_catch_up(socket, channel, None):
                socket.deliver(outgoing)
            return (
                {"ok": True, "recovered": False, "reason": "history unavailable"}
                if recovering
                else {"ok": True}
            )
        for outgoing in hub.end_catch_up(socket, channel, recovery):
            socket.deliver(outgoing)
        answer: dict[str, Any] = {"ok": True, **recovery.position.wire()}
        if recovering:
            answer["recovered"] = recovery.reason is None
            if recovery.reason is not None:
                answer["reason"] = recovery.reason
        return answer

    async def _run_presence(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """``emit("presence", channel)``: who is in a channel with presence the socket is in."""
        channel = args[0] if args else None
        refusal = check_channel_name(channel, self.settings.max_channel_length)
        if refusal is not None:
            return _answer(refusal)
        assert isinstance(channel, str)
        if not self.hub.options.presence(channel):
            return _answer(f"no presence for channel {channel!r}")
        if channel not in socket.subscriptions:
            return _answer(f"not subscribed to {channel!r}")
        try:
            members = await self.hub.broker.presence(channel)
        except BrokerError as error:
            return _answer(str(error))
        return {"ok": True, "presence": members}

    async def _run_unsubscribe(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """The client leaves a channel; the ``unsubscribe`` handlers run once it is out."""
        channel = args[0] if args else None
        refusal = check_channel_name(channel, self.settings.max_channel_length)
        if refusal is None and isinstance(channel, str) and self.hub.unsubscribe(socket, channel):
            await self._fire(socket, UNSUBSCRIBE, (channel,), channel)
        return _answer(refusal)

    def subscribe(self, socket: Socket, channel: str) -> str | None:
        """Add ``socket`` to ``channel`` on the hub (event loop thread); the refusal reason, if any."""
        settings = self.settings
        refusal = check_subscription(socket, channel, settings.max_channels, settings.max_channel_length)
        if refusal is None and socket._state is not SocketState.CONNECTED:
            refusal = "disconnected"
        if refusal is None:
            self.hub.subscribe(socket, channel)
        return refusal

    def _log_message(self, socket: Socket, message: Any, channel: str | None) -> None:
        """One line per message a client sends, in ``message_log_format`` (the seeds' setting)."""
        fields = {
            **socket.request.environ,
            "TIME": datetime.datetime.now().replace(microsecond=0),
            "MESSAGE": message,
            "CHANNEL": channel,
            "SESSION_ID": socket.session_id,
        }
        try:
            line = self.settings.message_log_format % fields  # type: ignore[operator]
        except (KeyError, TypeError, ValueError) as error:
            logger.error("message_log_format cannot be applied: %r", error)
            return
        message_logger.info(line)

    # -- fan-out ---------------------------------------------------------------------------------

    def emit(self, event: str, args: tuple[Any, ...], namespace: str = "/") -> None:
        """Send an event to every socket of ``namespace`` (on every node), encoded once for all of them.

        Safe from any thread: the encoding happens in the caller's thread, the writes on the loop.
        """
        broker = self.hub.broker
        outgoing = prepare(Outgoing(list(args), event=event), namespace, broker)
        self.hub.post(broker.broadcast, outgoing, namespace)


def _answer(refusal: str | None) -> dict[str, Any]:
    """The ack of a subscribe or unsubscribe request, and of a refused message or event."""
    return {"ok": True} if refusal is None else {"ok": False, "error": refusal}


def _ack_packets(namespace: str, ack_id: int, result: Any, event: str) -> list[str | bytes]:
    """The ack of ``event`` answering with ``result``; if JSON cannot hold that, an error answer in
    the shape of :func:`_answer`'s, so that the client is not left waiting."""
    try:
        return encode(sio.Packet(sio.PacketType.ACK, namespace, _ack_args(result), ack_id))
    except TypeError as error:
        logger.error("handler for %r returned an ack that JSON cannot hold: %s", event, error)
        answer = _answer("the answer cannot be sent as JSON")
        return encode(sio.Packet(sio.PacketType.ACK, namespace, [answer], ack_id))


def _name(handler: Handler) -> str:
    return getattr(handler.func, "__qualname__", repr(handler.func))
