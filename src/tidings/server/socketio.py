"""Socket.IO v5 server over Engine.IO sessions: namespaces, events, acks both ways, fan-out.

Spec: https://socket.io/docs/v4/socket-io-protocol/. Packet rules live in
:mod:`tidings.protocol.socketio`; this module keeps the state of connections and runs handlers.

Handlers of one connection run one after another, in the order their packets arrived, from a
per-connection job queue whose worker task exists only while there is work. ``def`` handlers run in a
thread pool, ``async def`` handlers on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import inspect
import itertools
import logging
import secrets
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol import socketio as sio
from tidings.server.config import Settings
from tidings.server.engine import Session
from tidings.server.handlers import CONNECT, DISCONNECT, Handler, Handlers, Refuse
from tidings.server.request import Request

logger = logging.getLogger("tidings.socketio")

Job = Callable[[], Awaitable[None]]
AckCallback = Callable[[list[Any] | None], None]  # None: the socket went before the ack came


def encode(packet: sio.Packet) -> list[str | bytes]:
    """A Socket.IO packet as the Engine.IO packets that carry it (text MESSAGE, then attachments)."""
    text, *attachments = sio.encode(packet)
    assert isinstance(text, str)
    return [eio.message(text), *attachments]


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
        "_pending",
        "_state",
        "auth",
        "connection",
        "context",
        "disconnect_reason",
        "io",
        "namespace",
        "request",
        "session_id",
    )

    def __init__(self, io: SocketIO, connection: Connection, namespace: str, auth: Any) -> None:
        self.io = io
        self.connection = connection
        self.namespace = namespace
        #: The connect payload the client sent (``auth`` option of the official clients).
        self.auth: Any = auth
        self.session_id = secrets.token_urlsafe(15)
        self.request: Request = connection.request
        #: Lives as long as this connection; handlers keep their per-connection state here.
        self.context: dict[str, Any] = {}
        self.disconnect_reason: str | None = None
        self._state = SocketState.CONNECTING
        self._pending: list[list[str | bytes]] = []
        self._acks: dict[int, AckCallback] = {}
        self._ack_ids = itertools.count()

    @property
    def connected(self) -> bool:
        return self._state is SocketState.CONNECTED

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        """Send the Socket.IO event ``event`` with ``args``; bytes anywhere in them go as binary.

        ``callback``, if given, is called with the client's ack arguments (in the handler pool, as a
        ``def`` or ``async def`` handler would be).
        """
        ack_id = None
        if callback is not None:
            handler = Handler(callback, inspect.iscoroutinefunction(callback))
            ack_id = self._add_ack(lambda args: self._run_callback(handler, args))
        self._post(encode(sio.Packet(sio.PacketType.EVENT, self.namespace, [event, *args], ack_id)))

    def send(self, message: Any) -> None:
        """Send ``message`` as the ``message`` event (what ``socket.on("message")`` receives)."""
        self.emit("message", message)

    def call(self, event: str, *args: Any, timeout: float = 30.0) -> Any:
        """Emit ``event`` and block until the client acks it; returns the ack's argument.

        For ``def`` handlers and other threads; ``async def`` code uses :meth:`acall`. Several ack
        arguments come back as a tuple, none as None. Raises ``TimeoutError`` after ``timeout``
        seconds and ``ConnectionError`` if the socket disconnects first.
        """
        if self.io.in_loop_thread():
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
        self.io.run_in_loop(self.io.disconnect, self, "server namespace disconnect", True)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], resolve: AckCallback) -> None:
        ack_id = self._add_ack(resolve)
        self._post(encode(sio.Packet(sio.PacketType.EVENT, self.namespace, [event, *args], ack_id)))

    def _add_ack(self, callback: AckCallback) -> int:
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = callback
        return ack_id

    def _run_callback(self, handler: Handler, args: list[Any] | None) -> None:
        if args is not None:
            self.connection.schedule(lambda: self.io.invoke_logged(handler, *args))

    def _post(self, packets: list[str | bytes]) -> None:
        self.io.run_in_loop(self._deliver, packets)

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

    __slots__ = ("_connect_timer", "_jobs", "_worker", "decoder", "request", "session", "sockets")

    def __init__(self, session: Session, max_attachments: int) -> None:
        self.session = session
        self.request = Request(session.scope)
        self.decoder = sio.Decoder(max_attachments)
        self.sockets: dict[str, Socket] = {}
        self._jobs: deque[Job] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._connect_timer: asyncio.TimerHandle | None = None

    def schedule(self, job: Job) -> None:
        """Run ``job`` after every job scheduled before it on this connection."""
        self._jobs.append(job)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        try:
            while self._jobs:
                try:
                    await self._jobs.popleft()()
                except Exception:  # handlers' own errors are caught inside jobs; this is a bug
                    logger.exception("connection job failed")
        finally:
            self._worker = None


class SocketIO:
    """Socket.IO state of a server: connections, sockets by namespace, handler execution."""

    def __init__(
        self, settings: Settings, handlers: Handlers, namespaces: Iterable[str] | str | None
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
        #: Connected sockets by namespace, then by session id.
        self.sockets: dict[str, dict[str, Socket]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- event loop and threads ----------------------------------------------------------------

    def bind_loop(self) -> None:
        """Remember the running loop: sends from other threads are handed to it."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def run_in_loop(self, func: Callable[..., None], *args: Any) -> None:
        """Call ``func`` on the event loop: now if this is the loop's thread, soon otherwise."""
        if self.in_loop_thread():
            func(*args)
        elif self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(func, *args)

    async def invoke(self, handler: Handler, *args: Any) -> Any:
        if handler.is_async:
            return await handler.func(*args)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.settings.handler_threads, thread_name_prefix="tidings-handler"
            )
        assert self.loop is not None
        context = contextvars.copy_context()
        return await self.loop.run_in_executor(self._executor, context.run, handler.func, *args)

    async def invoke_logged(self, handler: Handler, *args: Any) -> Any:
        """Run a handler; an exception is logged with its traceback and the connection goes on."""
        try:
            return await self.invoke(handler, *args)
        except Exception:
            logger.exception("handler %s raised", getattr(handler.func, "__qualname__", handler))
            return None

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- engine events ---------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.bind_loop()
        connection = Connection(session, self.settings.max_attachments)
        session.data = connection
        assert self.loop is not None
        connection._connect_timer = self.loop.call_later(
            self.settings.connect_timeout, self._connect_timed_out, connection
        )

    def _connect_timed_out(self, connection: Connection) -> None:
        if not connection.sockets:
            connection.session.close("connect timeout")

    def message_received(self, session: Session, data: str | bytes) -> None:
        connection: Connection = session.data
        decoder = connection.decoder
        packet = decoder.receive_text(data) if isinstance(data, str) else decoder.receive_binary(data)
        if packet is None:
            return
        socket = connection.sockets.get(packet.namespace)
        match packet.type:
            case sio.PacketType.CONNECT:
                if socket is None:
                    self._connect(connection, packet)
            case sio.PacketType.EVENT:
                if socket is not None and socket._state is SocketState.CONNECTED:
                    connection.schedule(lambda: self._run_event(socket, packet))
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
        if not self._accepts(namespace):
            error = {"message": "Invalid namespace"}
            connection.session.send_many(encode(sio.Packet(sio.PacketType.CONNECT_ERROR, namespace, error)))
            return
        if connection._connect_timer is not None:
            connection._connect_timer.cancel()
            connection._connect_timer = None
        socket = Socket(self, connection, namespace, packet.data if packet.data is not None else {})
        connection.sockets[namespace] = socket
        connection.schedule(lambda: self._run_connect(socket))

    async def _run_connect(self, socket: Socket) -> None:
        connection = socket.connection
        try:
            for handler in self.handlers.get(socket.namespace, CONNECT):
                await self.invoke(handler, socket.request, socket, socket.context)
        except Refuse as refusal:
            self._refuse(socket, refusal.reason, refusal.data)
            return
        except Exception:
            logger.exception("connect handler raised; connection refused")
            self._refuse(socket, "Internal server error", None)
            return
        if socket._state is not SocketState.CONNECTING:  # the session ended meanwhile
            return
        socket._state = SocketState.CONNECTED
        self.sockets.setdefault(socket.namespace, {})[socket.session_id] = socket
        session = connection.session
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
        socket.connection.session.send_many(
            encode(sio.Packet(sio.PacketType.CONNECT_ERROR, socket.namespace, error))
        )

    def disconnect(self, socket: Socket, reason: str, notify_client: bool) -> None:
        """Take a connected socket out of its namespace and run its disconnect handlers."""
        if socket._state is not SocketState.CONNECTED:
            return
        socket._state = SocketState.DISCONNECTED
        socket.disconnect_reason = reason
        socket.connection.sockets.pop(socket.namespace, None)
        namespace_sockets = self.sockets.get(socket.namespace, {})
        namespace_sockets.pop(socket.session_id, None)
        acks, socket._acks = socket._acks, {}
        for callback in acks.values():
            callback(None)
        if notify_client:
            packet = sio.Packet(sio.PacketType.DISCONNECT, socket.namespace)
            socket.connection.session.send_many(encode(packet))
        socket.connection.schedule(lambda: self._run_lifecycle(socket, DISCONNECT))

    async def _run_lifecycle(self, socket: Socket, event: str) -> None:
        for handler in self.handlers.get(socket.namespace, event):
            await self.invoke_logged(handler, socket.request, socket, socket.context)

    # -- events ----------------------------------------------------------------------------------

    async def _run_event(self, socket: Socket, packet: sio.Packet) -> None:
        event, *args = packet.data
        handlers = self.handlers.get(socket.namespace, event)
        if not handlers:
            logger.debug("no handler for event %r in %s", event, socket.namespace)
            return
        result = None
        for handler in handlers:
            value = await self.invoke_logged(handler, socket.request, socket, socket.context, *args)
            if result is None:
                result = value
        if packet.id is not None and socket._state is SocketState.CONNECTED:
            ack = sio.Packet(sio.PacketType.ACK, socket.namespace, _ack_args(result), packet.id)
            try:
                socket.connection.session.send_many(encode(ack))
            except TypeError as error:
                logger.error("handler for %r returned an ack that JSON cannot hold: %s", event, error)

    # -- fan-out ---------------------------------------------------------------------------------

    def emit(self, event: str, args: tuple[Any, ...], namespace: str = "/") -> None:
        """Send an event to every socket of ``namespace``, encoded once for all of them.

        Safe from any thread: the encoding happens in the caller's thread, the writes on the loop.
        """
        packets = encode(sio.Packet(sio.PacketType.EVENT, namespace, [event, *args]))
        self.run_in_loop(self._fan_out, namespace, packets)

    def _fan_out(self, namespace: str, packets: list[str | bytes]) -> None:
        recipients = self.sockets.get(namespace)
        if not recipients:
            return
        # A send can close a session whose buffer is full, which takes its socket out of
        # ``recipients``: iterate over a copy.
        if len(packets) == 1:
            packet = packets[0]
            for socket in list(recipients.values()):
                socket.connection.session.send(packet)
        else:
            for socket in list(recipients.values()):
                socket.connection.session.send_many(packets)
