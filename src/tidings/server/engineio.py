"""Engine.IO v4 server over ASGI: sessions on the event loop, their timers, the WebSocket transport.

Spec: https://socket.io/docs/v4/engine-io-protocol/. The rules — packets, the session's states, the
heartbeat and upgrade deadlines — live in :mod:`tidings.protocol.engineio`; this module and
:mod:`tidings.server.polling` (the HTTP long-polling transport) move the bytes and set the timers.

Each session has one :class:`~tidings.server.outbox.Outbox`, whatever its transport: a packet encoded
once (for a broadcast, once for all recipients) is appended as the same object to every recipient's
outbox. A pending long-poll takes the whole outbox as one payload; on a WebSocket the outbox's writer
drains it frame by frame.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Hashable
from typing import Any, Protocol

import orjson

from tidings.api.request import Headers
from tidings.message import Burst, FrameEncoder, Subscriber
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol import websocket as ws
from tidings.protocol.engineio import Due, Received, State
from tidings.server import polling
from tidings.server.limits import AddressLimits, Throttled
from tidings.server.logs import context
from tidings.server.outbox import DirectSend, Outbox, direct_send
from tidings.server.responses import OriginCheck, Receive, Scope, Send, reject_websocket
from tidings.settings import Settings

logger = logging.getLogger("tidings.engine")

#: Event loops may wake a timer a little early (uvloop rounds to the millisecond): this close counts.
TIMER_SLACK = 0.001

# Read once for the hot paths (send: once per recipient of a broadcast; _websocket_message: once per
# packet): on Python 3.11, reading an Enum member off its class costs ~70 ns.
_CLOSED = State.CLOSED
_PACKET_MESSAGE = eio.PacketType.MESSAGE

#: What the metrics count a session closed for a protocol error under (see :meth:`Session.close`).
PROTOCOL_ERROR_REASON = "protocol error"


class EngineHandler(Protocol):
    """What the layer above (Socket.IO) hears from the engine. Called on the event loop."""

    def session_opened(self, session: Session) -> None: ...

    def message_received(self, session: Session, data: str | bytes) -> None:
        """May raise ProtocolError: the session is then closed with that reason."""

    def session_closed(self, session: Session, reason: str) -> None: ...


class Session(eio.Session):
    """One Engine.IO session on the event loop: the protocol's session, with its outbox, its timer
    and the requests that serve it; ``_poll`` (the pending long-poll) and ``_posting`` belong to
    :mod:`tidings.server.polling`. All methods run on the event loop thread."""

    __slots__ = (
        "_direct",
        "_handle",
        "_held",
        "_poll",
        "_posting",
        "address",
        "data",
        "engine",
        "outbox",
        "scope",
    )

    def __init__(self, engine: Engine, sid: str, transport: str, scope: Scope, address: str | None) -> None:
        super().__init__(sid, transport, engine.timing, asyncio.get_running_loop().time())
        self.engine = engine
        self.scope = scope
        self.address = address  # what the per-address limits count it under (None: not counted)
        self.data: Any = None  # the Socket.IO layer's per-session state
        self.outbox = Outbox(engine.settings.max_buffer, self._write_failed)
        self._poll: asyncio.Future[bool] | None = None  # True: the client went away
        self._posting = False  # a polling POST is being handled
        self._handle: asyncio.TimerHandle | None = None  # the one timer (heartbeat, upgrade)
        self._held: asyncio.Future[None] | None = None  # set while reading is held (hold_reading)
        self._direct: DirectSend | None = None  # the WebSocket's synchronous face, once attached

    # -- sending ---------------------------------------------------------------------------------

    def send(self, packet: str | bytes) -> None:
        """Queue one encoded packet (see :mod:`tidings.protocol.engineio` for the form)."""
        if self.state is _CLOSED:
            return
        # Outbox.put, inline for a WebSocket's direct send: this runs once per recipient of every broadcast.
        outbox = self.outbox
        direct = outbox.direct
        if not (outbox.put(packet) if direct is None else direct.send_frame(packet, outbox.limit)):
            self.close("send buffer full", ws.POLICY_VIOLATION)
            return
        poll = self._poll  # _wake_poll, inline: this runs once per recipient of every broadcast
        if poll is not None and not poll.done():
            poll.set_result(False)

    def send_many(self, packets: list[str | bytes]) -> None:
        """Queue packets that belong together (a binary packet and its attachments)."""
        if self.state is _CLOSED:
            return
        if not self.outbox.put_many(packets):
            self.close("send buffer full", ws.POLICY_VIOLATION)
            return
        self._wake_poll()

    def take_burst(
        self, burst: Burst, member: Subscriber, form: Hashable, encode: FrameEncoder, namespace: str
    ) -> bool:
        """Join ``burst`` for ``member`` (see :meth:`Subscriber.take_burst`): only a WebSocket whose
        frames go straight to its transport can, and only one burst at a time."""
        direct = self.outbox.direct
        if self.state is _CLOSED or direct is None or not direct.enter_burst(burst, self, form):
            return False
        burst.join(member, self, form, encode, namespace)
        return True

    def write_burst(self, data: bytes) -> None:
        """The frames of a burst this session took (a :class:`BurstSink`)."""
        direct = self._direct
        assert direct is not None, "a burst on a session without a direct send"
        if not direct.write_burst(data, self.outbox.limit) and self.state is not _CLOSED:
            self.close("send buffer full", ws.POLICY_VIOLATION)

    def _wake_poll(self) -> None:
        if self._poll is not None and not self._poll.done():
            self._poll.set_result(False)

    def _write_failed(self) -> None:
        self.close("transport error")

    # -- reading: held while the layer above is behind ------------------------------------------

    def hold_reading(self) -> None:
        """Take no more messages from the client until :meth:`release_reading`: the layer above has
        enough of them waiting. A WebSocket is not read (TCP slows the client down); a polling POST
        is answered only then (a client has one POST at a time)."""
        if self._held is None and self.state is not State.CLOSED:
            self._held = asyncio.get_running_loop().create_future()
            if self._direct is not None:
                self._direct.hold_reading(True)

    def release_reading(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.set_result(None)
            if self._direct is not None:
                self._direct.hold_reading(False)

    async def readable(self) -> None:
        """Return once messages from the client are taken again (at once unless held)."""
        if self._held is not None:
            await asyncio.shield(self._held)

    def attach(self, send: Send, direct: DirectSend | None) -> None:
        """Write to this WebSocket from now on (a new session's, or the upgrade's)."""
        self.outbox.attach(send, direct=direct)
        self._direct = direct
        if direct is not None and self._held is not None:
            direct.hold_reading(True)

    # -- receiving -------------------------------------------------------------------------------

    def take(self, packet: eio.Packet) -> None:
        """Act on one packet from the client (either transport); may raise ProtocolError."""
        if packet.type is _PACKET_MESSAGE:  # what receive() says of a MESSAGE, without the call
            self.engine.handler.message_received(self, packet.data)
            return
        received = self.receive(packet)
        if received is Received.PONG:
            self.pong(asyncio.get_running_loop().time())
            self._arm()
        elif received is Received.CLOSE:
            self.close("client close", tell_client=False)

    # -- the timer: heartbeat and upgrade deadlines ----------------------------------------------

    def _arm(self) -> None:
        """Set the session's one timer for its next deadline."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_at(self.next_deadline(), self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        due = self.on_deadline(asyncio.get_running_loop().time() + TIMER_SLACK)
        if due is Due.PING:
            self.send(eio.PING)
        elif due is Due.PING_TIMEOUT:
            self.close("ping timeout")
        elif due is Due.UPGRADE_TIMEOUT:
            self.engine._cancel_exchange(self)
        if self.state is not State.CLOSED:
            self._arm()

    # -- closing ---------------------------------------------------------------------------------

    def close(self, reason: str, code: int = ws.NORMAL_CLOSURE, tell_client: bool = True) -> None:
        """End the session: flush what is queued, then close the transport. Idempotent.

        A polling client is told with a CLOSE packet, unless ``tell_client`` is False (it closed the
        session itself): its pending poll then ends with a NOOP, as the reference server's does.
        """
        if not self.end():
            return
        if self._handle is not None:
            self._handle.cancel()
        engine = self.engine
        # A protocol error's reason says what was wrong: counted under one name, so that clients
        # cannot make the metrics grow one series per message they make up.
        counted = PROTOCOL_ERROR_REASON if code == ws.PROTOCOL_ERROR else reason
        engine.closed[counted] = engine.closed.get(counted, 0) + 1
        engine.sessions.pop(self.sid, None)
        self.engine.release(self.address)
        self.engine._cancel_exchange(self)
        if self.transport == "websocket":
            self.outbox.close(code, reason)
        else:
            if tell_client and not self.outbox.put(eio.CLOSE):
                self.outbox.take()  # full: drop what a stalled client would never read
                self.outbox.put(eio.CLOSE)
            self._wake_poll()
        logger.debug("session %s closed: %s", self.sid, reason, extra=context(self.sid))
        self.engine.handler.session_closed(self, reason)
        self.release_reading()  # whoever waits to read finds the session closed


class Engine:
    """Serves the Engine.IO endpoint; one per :class:`tidings.Server`."""

    def __init__(self, settings: Settings, handler: EngineHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.timing = eio.Timing(settings.ping_interval, settings.ping_timeout, settings.upgrade_timeout)
        self.sessions: dict[str, Session] = {}
        # Read by the metrics at a scrape: sessions opened by transport, closed by reason; upgrades.
        self.opened = dict.fromkeys(settings.transports, 0)
        self.closed: dict[str, int] = {}
        self.upgrades = 0
        self.polling_written = 0  # bytes of polling responses that carried packets
        # The exchanges of the WebSockets that are taking a session over, by sid: the session's
        # timer cancels one at its upgrade deadline.
        self._upgrades: dict[str, asyncio.Future[None]] = {}
        self.origins = OriginCheck(settings.cors_allowed_origins, settings.cors_credentials)
        if self.origins.any and self.origins.credentials:
            logger.warning(
                'cors_allowed_origins="*" with cors_credentials=True: any web site can make requests '
                "to this server that carry its visitors' cookies, and act as them"
            )
        self.limits = AddressLimits(
            settings.max_sessions_per_address,
            settings.session_rate_per_address,
            settings.session_burst_per_address,
        )
        self._capacity_refusals = Throttled(
            "refusing a new session: max_sessions (%d) reached", logger=logger
        )
        self._address_refusals = Throttled("refusing a new session: %s: %s", logger=logger)

    def open(self, transport: str, scope: Scope, address: str | None) -> Session:
        """A new session (EIO §"Handshake"), its OPEN packet queued."""
        sid = secrets.token_urlsafe(15)
        session = Session(self, sid, transport, scope, address)
        self.sessions[sid] = session
        self.opened[transport] += 1
        upgrades = ["websocket"] if transport == "polling" and self.offers("websocket") else []
        s = self.settings
        session.send(eio.open_packet(sid, upgrades, s.ping_interval, s.ping_timeout, s.max_payload))
        session._arm()
        self.handler.session_opened(session)
        return session

    def admit(self, scope: Scope) -> tuple[str | None, tuple[int, bytes] | None]:
        """May a new session open for this request? ``(address, None)``: yes, counted under
        ``address`` (None: a client without one, counted under none); ``(None, (status, body))``:
        refused, with that answer."""
        if len(self.sessions) >= self.settings.max_sessions:
            self._capacity_refusals(self.settings.max_sessions)
            return None, (503, _AT_CAPACITY)
        client = scope.get("client")
        if not client:
            return None, None
        address, reason = self.limits.admit(client[0])
        if reason is not None:
            self._address_refusals(reason, client[0])
            return None, (429, orjson.dumps({"code": int(eio.ErrorCode.BAD_REQUEST), "message": reason}))
        return address, None

    def release(self, address: str | None) -> None:
        """A session :meth:`admit` let in is gone."""
        if address is not None:
            self.limits.release(address)

    def offers(self, transport: str) -> bool:
        return transport in self.settings.transports

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            session.close("server shutdown", ws.GOING_AWAY)

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await polling.handle(self, scope, receive, send)

    # -- WebSocket --------------------------------------------------------------------------------

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = Headers(scope.get("headers", []))
        try:
            if not self.origins.allows(scope, headers)[0]:
                raise eio.RequestError(eio.ErrorCode.FORBIDDEN)
            info = eio.parse_query(scope.get("query_string", b""))
            if info.transport != "websocket" or not self.offers("websocket"):
                raise eio.RequestError(eio.ErrorCode.UNKNOWN_TRANSPORT)
            session = None
            if info.sid is not None:
                session = self.sessions.get(info.sid)
                if session is None:
                    raise eio.RequestError(eio.ErrorCode.UNKNOWN_SID)
                if not session.begin_upgrade(asyncio.get_running_loop().time()):
                    await _turn_away(send)
                    return
                session._arm()  # the upgrade deadline may come before the heartbeat's
        except eio.RequestError as error:
            status = 403 if error.code is eio.ErrorCode.FORBIDDEN else 400
            await reject_websocket(scope, send, status, error.code.body())
            return
        direct = direct_send(scope)
        if session is None:
            address, refusal = self.admit(scope)
            if refusal is not None:
                await reject_websocket(scope, send, *refusal)
                return
            try:
                await send({"type": "websocket.accept"})
            except BaseException:
                self.release(address)  # no session after all
                raise
            session = self.open("websocket", scope, address)
            session.attach(send, direct)
        elif not await self._upgrade(session, direct, receive, send):
            return
        if direct is not None:
            # tidings' own WebSocket protocol: messages come by callback, and this coroutine (and
            # the server's task running it) ends here, so an idle session holds no task.
            direct.detach(
                lambda data: self._websocket_message(session, data),
                lambda code, reason: session.close("transport close"),
            )
            return
        await self._websocket_loop(session, receive)

    async def _upgrade(
        self, session: Session, direct: DirectSend | None, receive: Receive, send: Send
    ) -> bool:
        """Take a polling session over to this WebSocket (EIO §"Upgrade"); False if it failed."""
        exchange = asyncio.ensure_future(_exchange(session, receive, send))
        self._upgrades[session.sid] = exchange
        try:
            await asyncio.wait((exchange,))
        finally:
            del self._upgrades[session.sid]
            exchange.cancel()
            if session.state is State.PROBING or session.state is State.UPGRADING:
                session.abandon_upgrade()  # a pending poll goes on waiting for packets
        if not exchange.cancelled() and exchange.exception() is None:
            session.attach(send, direct)
            self.upgrades += 1
            return True
        error = None if exchange.cancelled() else exchange.exception()
        if isinstance(error, _Disconnected):
            return False
        if error is not None and not isinstance(error, ProtocolError):
            raise error
        # A protocol error, or cancelled: by the session's close, or by its timer (upgrade timeout).
        closed = session.state is State.CLOSED
        reason = "session closed" if closed else str(error or Due.UPGRADE_TIMEOUT.value)
        logger.debug("session %s: upgrade failed: %s", session.sid, reason, extra=context(session.sid))
        await send({"type": "websocket.close", "code": ws.NORMAL_CLOSURE if closed else ws.PROTOCOL_ERROR})
        return False

    def _cancel_exchange(self, session: Session) -> None:
        """End the upgrade exchange of ``session``, if any: :meth:`_upgrade` closes its WebSocket."""
        exchange = self._upgrades.get(session.sid)
        if exchange is not None:
            exchange.cancel()

    async def _websocket_loop(self, session: Session, receive: Receive) -> None:
        while True:
            await session.readable()
            message = await receive()
            if message["type"] == "websocket.disconnect":
                session.close("transport close")
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            self._websocket_message(session, data)

    def _websocket_message(self, session: Session, data: str | bytes) -> None:
        if session.state is _CLOSED:
            return  # closing: wait for the disconnect that follows our close frame
        if len(data) > self.settings.max_payload:
            session.close("message too big", ws.MESSAGE_TOO_BIG)
            return
        try:
            message = eio.message_data(data)
            if message is not None:  # what session.take does with a MESSAGE, without the Packet
                self.handler.message_received(session, message)
            else:
                session.take(eio.decode_packet(data))
        except ProtocolError as error:
            logger.info("session %s: protocol error: %s", session.sid, error, extra=context(session.sid))
            session.close(str(error), ws.PROTOCOL_ERROR)


async def _exchange(session: Session, receive: Receive, send: Send) -> None:
    """The upgrading WebSocket's side of EIO §"Upgrade": accept, probe, UPGRADE."""
    await send({"type": "websocket.accept"})
    answer = session.probe(await _receive_text(receive))
    await send({"type": "websocket.send", "text": answer})
    session._wake_poll()  # the pending poll gets a NOOP: the client pauses polling
    session.upgrade(await _receive_text(receive))


async def _turn_away(send: Send) -> None:
    """Accept a WebSocket that came for a session it cannot take over, and close it at once.

    As the reference server does: its clients then see a close, not a failed handshake (an error
    event). It closes with no status code, which an ASGI app cannot send: 1000 is the nearest.
    """
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": ws.NORMAL_CLOSURE})


class _Disconnected(Exception):
    """The WebSocket peer left while we waited for a message."""


_AT_CAPACITY = b'{"code":3,"message":"Server at capacity"}'


async def _receive_text(receive: Receive) -> str | None:
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise _Disconnected
    return message.get("text")
