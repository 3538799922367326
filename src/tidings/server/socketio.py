"""Socket.IO v5 server over Engine.IO sessions: connections, namespaces, events, acks, lifecycle events.

Spec: https://socket.io/docs/v4/socket-io-protocol/. What a client may send, and the states of its
sockets, are :mod:`tidings.protocol.socketio`'s; who is in which channel is :mod:`tidings.hub`'s. This
module moves packets between the protocol and the Engine.IO session, keeps the timers (connect
timeout, attachment deadline) and runs handlers (:mod:`tidings.server.running`) in the order the
seeds gave them.

Handlers of one connection run one after another, in the order their packets arrived, from the
connection's job queue (:mod:`tidings.server.jobs`). A client event whose handlers are all ``def``
is one job in a handler thread (:class:`EventInThread`): the handlers and the ack's encoding run
there, and the loop only sends the ack. The channel events (``message``, ``subscribe``,
``unsubscribe``, ``presence``) are :mod:`tidings.server.channel_events`'.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from tidings.api.handlers import (
    ANY,
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
from tidings.api.request import Request
from tidings.api.routing import emit, route
from tidings.api.socket import Socket
from tidings.brokers import Broker
from tidings.channels import KeptSession, Targets
from tidings.hub import Hub
from tidings.protocol import ProtocolError
from tidings.protocol import socketio as sio
from tidings.protocol.socketio import SocketState
from tidings.protocol.websocket import PROTOCOL_ERROR
from tidings.server import recovery
from tidings.server.channel_events import PRESENCE, ChannelEvents
from tidings.server.engineio import Session
from tidings.server.jobs import JobQueue, Pool, Running, ThreadJob
from tidings.server.logs import context
from tidings.server.running import Answered, HandlerRunner, answer
from tidings.settings import Settings

if TYPE_CHECKING:
    from tidings.server.admin import Admin

logger = logging.getLogger("tidings.socketio")

# Read once for the paths that run once per client event: on Python 3.11, reading an Enum member off
# its class costs ~70 ns.
_CONNECTED = SocketState.CONNECTED

#: The name the metrics count events under once ``metrics_event_names`` names are counted.
OTHER = "other"
#: The client's requests to tidings' channels (with ``presence``, when it is on): not the app's own events.
CHANNEL_EVENTS = frozenset({MESSAGE, SUBSCRIBE, UNSUBSCRIBE})


class Connection(JobQueue):
    """The server's side of one client's Socket.IO connection: the protocol's state of it
    (:attr:`protocol`), the request it came with, its job queue and its timers."""

    __slots__ = ("_attachment_timer", "_connect_timer", "_incoming", "protocol", "request")

    session: Session

    def __init__(
        self,
        session: Session,
        settings: Settings,
        running: set[Running],
        pool: Pool,
    ) -> None:
        super().__init__(session, settings, running, pool)
        self.request = Request(session.scope)
        self.protocol: sio.Connection[Socket] = sio.Connection(
            settings.max_namespaces,
            settings.max_attachments,
            settings.max_binary_size,
            settings.attachment_timeout,
        )
        self._incoming = 0  # bytes of the messages of the packet being decoded
        self._connect_timer: asyncio.TimerHandle | None = None
        self._attachment_timer: asyncio.TimerHandle | None = None

    def watch_attachments(self) -> None:
        """Keep a timer for the deadline of the binary packet the decoder holds, if any."""
        deadline = self.protocol.decoder.deadline
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
            self.protocol.decoder.check_deadline(asyncio.get_running_loop().time())
        except ProtocolError as error:
            logger.info(
                "session %s: protocol error: %s", self.session.sid, error, extra=context(self.session.sid)
            )
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
        self.hub.configure(settings)
        self.runner = HandlerRunner(settings, handlers)
        self.channels = ChannelEvents(settings, handlers, self.hub, self.runner)
        #: The Socket.IO Admin UI's namespace, if the server has one (see :mod:`tidings.server.admin`).
        self.admin: Admin | None = None
        #: Events received, by name: the first ``metrics_event_names`` names, then all as "other"
        #: (a client makes names up); read by the metrics at a scrape.
        self.events: dict[str, int] = {}
        #: The job queues' work in progress (worker tasks, jobs in handler threads): handlers running
        #: or waiting to run, each connection's in order.
        self.running: set[Running] = set()

    async def run_handler(
        self, socket: Socket, handler: Handler, args: Iterable[Any], channels: Collection[str]
    ) -> Any:
        """Run one handler for ``socket`` (see :meth:`HandlerRunner.run`)."""
        return await self.runner.run(socket, handler, args, channels)

    def subscribe(self, socket: Socket, channel: str) -> str | None:
        """Add ``socket`` to ``channel`` (event loop thread); the refusal reason, if any."""
        return self.channels.subscribe(socket, channel)

    def shutdown(self) -> None:
        self.hub.unbind()
        self.runner.shutdown()

    def abandon(self) -> None:
        """Cancel the handlers still running (a ``def`` handler's thread runs on, unwaited)."""
        if self.running:
            logger.warning(
                "shutdown_timeout (%gs) passed: abandoning the handlers of %d connection(s)",
                self.settings.shutdown_timeout,
                len(self.running),
            )
        for task in list(self.running):
            task.cancel()

    # -- engine events ---------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.hub.bind_loop()
        if self.admin is not None:
            self.admin.session_opened()
        connection = Connection(session, self.settings, self.running, self.runner)
        session.data = connection
        connection._connect_timer = asyncio.get_running_loop().call_later(
            self.settings.connect_timeout, self._connect_timed_out, connection
        )

    def _connect_timed_out(self, connection: Connection) -> None:
        if not connection.protocol.sockets:
            connection.session.close("connect timeout")

    def message_received(self, session: Session, data: str | bytes) -> None:
        connection: Connection = session.data
        protocol = connection.protocol
        decoder = protocol.decoder
        connection._incoming += len(data)
        if isinstance(data, str):
            received = protocol.receive_text(data)
            if received is None and decoder.awaiting_attachments:  # a binary packet's text part
                decoder.start_deadline(asyncio.get_running_loop().time())
                connection.watch_attachments()
                return
        else:
            received = protocol.receive_binary(data, asyncio.get_running_loop().time())
            connection.watch_attachments()  # the last attachment is in, or one more is due
            if received is None and decoder.awaiting_attachments:
                return
        size, connection._incoming = connection._incoming, 0
        if type(received) is sio.Packet:  # an EVENT of a connected socket
            packet: sio.Packet = received
            socket = protocol.sockets[packet.namespace]
            event = packet.data[0]
            # An event whose own handlers include an async one does not go to a thread: no more
            # look-up than this on the async def handlers' path.
            calls = (
                None
                if (socket.namespace, event) in self.handlers.has_async
                else self._threaded_calls(socket, packet)
            )
            if calls is not None:
                connection.schedule(EventInThread(self, socket, packet, calls), size)
            else:
                connection.schedule(functools.partial(self._run_event, socket, packet), size)
        elif isinstance(received, sio.ConnectRequest):
            self._connect(connection, received)
        elif isinstance(received, sio.AckReceived):
            received.callback(received.args)
        elif isinstance(received, sio.DisconnectRequest):
            self.disconnect(received.socket, "client namespace disconnect", False)

    def session_closed(self, session: Session, reason: str) -> None:
        connection: Connection = session.data
        if self.admin is not None:
            self.admin.session_closed()
        if connection._connect_timer is not None:
            connection._connect_timer.cancel()
        if connection._attachment_timer is not None:
            connection._attachment_timer.cancel()
        protocol = connection.protocol
        for socket in list(protocol.sockets.values()):
            if socket._state is SocketState.CONNECTING:
                protocol.drop(socket)  # its connect handlers find out when they return
            else:
                self.disconnect(socket, reason, False)

    # -- namespace connect and disconnect (SIO §"Connection to a namespace") --------------------

    def _accepts(self, namespace: str) -> bool:
        if self._namespaces == "*" or (self.admin is not None and self.admin.owns(namespace)):
            return True
        if self._namespaces is None:
            return self.handlers.serves(namespace)
        return namespace in self._namespaces

    def _connect(self, connection: Connection, request: sio.ConnectRequest) -> None:
        namespace = request.namespace
        refusal = None
        if not self._accepts(namespace):
            refusal = "Invalid namespace"
        elif connection.protocol.full:
            refusal = "too many namespaces"
        if refusal is not None:
            connection.session.send_many(sio.connect_error(namespace, refusal))
            return
        if connection._connect_timer is not None:
            connection._connect_timer.cancel()
            connection._connect_timer = None
        socket = Socket(self, connection, namespace, request.auth)
        connection.protocol.open(socket)
        if self.admin is not None and self.admin.owns(namespace):
            connection.schedule(lambda: self._run_admin_login(connection, socket))
            return
        comeback = recovery.comeback(request.auth) if socket._pid is not None else None
        if comeback is None and connection.idle and not self.handlers.get(namespace, CONNECT):
            self._connected(connection, socket)  # what the job would do, without a task per connection
        else:
            connection.schedule(lambda: self._run_connect(connection, socket, comeback))

    async def _run_connect(
        self, connection: Connection, socket: Socket, comeback: tuple[str, str] | None = None
    ) -> None:
        """Take up a kept session if the client comes back to one, run the connect handlers, then
        accept the socket (or resume the kept session's)."""
        kept, offset = None, ""
        if comeback is not None:
            pid, offset = comeback
            kept = await recovery.take(self.hub, socket, pid, offset)
        try:
            for handler in self.handlers.get(socket.namespace, CONNECT):
                await self.runner.invoke(handler, socket.request, socket, socket.context)
        except Refuse as refusal:
            self._refuse(connection, socket, refusal.reason, refusal.data)
        except Exception as error:
            logger.exception(
                "connect handler raised; connection refused",
                extra=context(socket.session_id, socket.namespace),
            )
            self._refuse(connection, socket, "Internal server error", None)
            await self.runner.run_error_handlers(socket, error, ())
        else:
            if socket._state is SocketState.CONNECTING:
                if kept is None:
                    self._connected(connection, socket)
                else:
                    await self._resume(connection, socket, kept, offset)
                return
            if kept is not None:  # the session ended while the handlers ran: keep its state again
                recovery.keep(self.hub, socket, kept.channels)
        # Refused, or the session ended while the connect handlers ran: the socket is over.
        await self.runner.fire(socket, FINISH, ())

    async def _run_admin_login(self, connection: Connection, socket: Socket) -> None:
        """The Admin UI's namespace: its login instead of connect handlers."""
        assert self.admin is not None
        refusal = await self.admin.login(socket)
        if refusal is not None:
            self._refuse(connection, socket, refusal, None)
        elif socket._state is SocketState.CONNECTING:
            self._connected(connection, socket)

    def _connected(self, connection: Connection, socket: Socket) -> None:
        replies = connection.protocol.accept(socket, socket.session_id, socket._pid)
        self.hub.join(socket, socket.namespace)
        for packets in replies:
            connection.session.send_many(packets)
        if self.admin is not None:
            self.admin.connected(socket)

    async def _resume(self, connection: Connection, socket: Socket, kept: KeptSession, offset: str) -> None:
        """Accept a socket that took up ``kept``: its channels, what it missed after ``offset``, then
        the CONNECT reply (:func:`recovery.resume`)."""
        missed = await recovery.resume(self.hub, socket, kept, offset)
        ended = socket._state is not SocketState.CONNECTING  # the session ended meanwhile
        if not ended:
            packets = recovery.missed_packets(socket, missed)
            if packets:
                connection.session.send_many(packets)  # past max_buffer, this ends the session
        if socket._state is not SocketState.CONNECTING:
            socket._held = None
            self.hub.leave(socket, socket.namespace)
            self.hub.broker.release(socket.session_id)
            if ended and socket.recovered:  # its client may come back for it again
                recovery.keep(self.hub, socket, kept.channels)
            await self.runner.fire(socket, FINISH, ())
            return
        for packets in connection.protocol.accept(socket, socket.session_id, socket._pid):
            connection.session.send_many(packets)
        recovery.release_held(self.hub, socket, missed)
        if self.admin is not None:
            self.admin.connected(socket)

    def _refuse(self, connection: Connection, socket: Socket, reason: str, data: Any) -> None:
        if socket._state is not SocketState.CONNECTING:
            return  # the session ended meanwhile: nobody to tell
        connection.protocol.drop(socket)
        try:
            packets = sio.connect_error(socket.namespace, reason, data)
        except TypeError as problem:
            logger.error("Refuse data cannot be sent (%s); refusing without it", problem)
            packets = sio.connect_error(socket.namespace, reason)
        connection.session.send_many(packets)

    def disconnect(self, socket: Socket, reason: str, notify_client: bool) -> None:
        """Take a connected socket out of its namespace and channels; run its ending handlers."""
        if socket._state is not SocketState.CONNECTED:
            return
        connection = cast(Connection, socket.connection)
        callbacks = connection.protocol.disconnect(socket)
        socket.disconnect_reason = reason
        channels = self.hub.leave(socket, socket.namespace)
        if socket._pid is not None:
            self.hub.broker.release(socket.session_id)
            if reason in recovery.RECOVERABLE:  # its client may come back for it
                recovery.keep(self.hub, socket, tuple(channels))
        for callback in callbacks:
            callback(None)
        if notify_client:
            connection.session.send_many(sio.namespace_disconnect(socket.namespace))
        if self.admin is not None:
            self.admin.disconnected(socket, reason)
        handlers, namespace = self.handlers, socket.namespace
        if (
            handlers.get(namespace, DISCONNECT)
            or handlers.get(namespace, FINISH)
            or (channels and handlers.get(namespace, UNSUBSCRIBE))
        ):  # else the job would run no handler: no task for it
            connection.schedule(lambda: self._run_ending(socket, channels))

    async def _run_ending(self, socket: Socket, channels: list[str]) -> None:
        """The seeds' order: disconnect, then unsubscribe from each channel it was in, then finish."""
        await self.runner.fire(socket, DISCONNECT, channels)
        for channel in channels:
            await self.runner.fire(socket, UNSUBSCRIBE, (channel,), channel)
        await self.runner.fire(socket, FINISH, channels)

    # -- events ----------------------------------------------------------------------------------

    def _threaded_calls(
        self, socket: Socket, packet: sio.Packet
    ) -> Sequence[tuple[Handler, Sequence[Any]]] | None:
        """The handler calls of a client event that can run whole in a handler thread: one of the
        app's own events (not a channel event, not the Admin UI's) whose handlers, and the
        namespace's error handlers, are all ``def``; None for the others."""
        namespace, data = socket.namespace, packet.data
        event = data[0]
        handlers = self.handlers
        if (
            event in CHANNEL_EVENTS
            or (event == PRESENCE and self.settings.presence)
            or (self.admin is not None and self.admin.owns(namespace))
            or not handlers.all_def(namespace, ERROR)
        ):
            return None
        own = [] if event in LIFECYCLE or event == ANY else handlers.get(namespace, event)
        if not handlers.all_def(namespace, event if own else ANY):  # else the catch-all's
            return None
        return self._calls(namespace, event, data[1:], own) or None

    def _calls(
        self, namespace: str, event: str, args: list[Any], own: list[Handler] | None = None
    ) -> Sequence[tuple[Handler, Sequence[Any]]]:
        """The handlers of one of the app's own events with their arguments, or the catch-all's;
        ``own``: the event's own handlers, if the caller has looked them up already."""
        if own is None:
            own = [] if event in LIFECYCLE or event == ANY else self.handlers.get(namespace, event)
        if own:
            return [(handler, args) for handler in own]
        return self.handlers.catch_all(namespace, event, args)

    def _event_received(self, socket: Socket, packet: sio.Packet) -> None:
        """Count a client event as it is run (the metrics, the Admin UI)."""
        if self.admin is not None:
            self.admin.event_received(socket, packet.data)
        event = packet.data[0]
        events = self.events
        counted = event if event in events or len(events) < self.settings.metrics_event_names else OTHER
        events[counted] = events.get(counted, 0) + 1

    async def _run_event(self, socket: Socket, packet: sio.Packet) -> None:
        if self.admin is not None and self.admin.owns(socket.namespace):
            self.admin.act(packet.data)
            return
        self._event_received(socket, packet)
        event, *args = packet.data
        if event == MESSAGE:
            result = await self.channels.message(socket, args)
        elif event == SUBSCRIBE:
            result = await self.channels.subscribe_request(socket, args)
        elif event == UNSUBSCRIBE:
            result = await self.channels.unsubscribe_request(socket, args)
        elif event == PRESENCE and self.settings.presence:
            result = await self.channels.presence(socket, args)
        else:
            calls = self._calls(socket.namespace, event, args)
            if not calls:
                logger.debug("no handler for event %r in %s", event, socket.namespace)
                return
            result = await self.runner.run_answering(socket, calls, socket.channels)
        if packet.id is not None and socket._state is _CONNECTED:
            socket.connection.session.send_many(_ack_packets(socket.namespace, packet.id, result, event))

    # -- fan-out ---------------------------------------------------------------------------------

    def emit(
        self,
        event: str,
        args: tuple[Any, ...],
        to: Targets | None = None,
        namespace: str = "/",
        exclude: Targets | None = None,
    ) -> None:
        """Send an event to every socket of ``namespace`` or to those ``to`` names, but those
        ``exclude`` names (on every node), encoded once for all of them.

        Safe from any thread: the encoding happens in the caller's thread, the writes on the loop.
        """
        send = emit(event, args, to, namespace, exclude, self.settings.max_channel_length)
        route(send, self.hub.broker, self.hub.post)


class EventInThread(ThreadJob):
    """A client event whose handlers are all ``def``, run whole in a handler thread: the handlers
    (:meth:`HandlerRunner.answer_in_thread`) and the encoding of the ack there, the sending of the
    ack on the loop. No task, coroutine or future is made for it."""

    __slots__ = ("calls", "channels", "io", "packet", "socket")

    def __init__(
        self, io: SocketIO, socket: Socket, packet: sio.Packet, calls: Sequence[tuple[Handler, Sequence[Any]]]
    ) -> None:
        self.io = io
        self.socket = socket
        self.packet = packet
        self.calls = calls
        self.channels: frozenset[str] = frozenset()

    def start(self) -> None:
        self.io._event_received(self.socket, self.packet)
        self.channels = self.socket.channels  # as the job starts, as _run_event takes them

    def run(self) -> tuple[Answered, list[str | bytes] | None]:
        socket, packet = self.socket, self.packet
        answered = self.io.runner.answer_in_thread(socket, self.calls, self.channels)
        if packet.id is None:
            return answered, None
        return answered, _ack_packets(socket.namespace, packet.id, answered.result, packet.data[0])

    def finish(self, result: tuple[Answered, list[str | bytes] | None]) -> None:
        answered, packets = result
        self.io.runner.count(answered)
        socket = self.socket
        if packets is not None and socket._state is _CONNECTED:
            socket.connection.session.send_many(packets)


def _ack_packets(namespace: str, ack_id: int, result: Any, event: str) -> list[str | bytes]:
    """The ack of ``event`` answering with ``result`` (a tuple: its items; None: none); if JSON cannot
    hold that, an error answer in the shape of :func:`answer`'s, so that the client is not left waiting."""
    if result is None:
        args = []
    elif isinstance(result, tuple):
        args = list(result)
    else:
        args = [result]
    try:
        return sio.ack(namespace, ack_id, args)
    except TypeError as error:
        logger.error("handler for %r returned an ack that JSON cannot hold: %s", event, error)
        return sio.ack(namespace, ack_id, [answer("the answer cannot be sent as JSON")])
