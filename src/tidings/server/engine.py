"""Engine.IO v4 server over ASGI: HTTP long-polling, WebSocket, the upgrade between them, heartbeat.

Spec: https://socket.io/docs/v4/engine-io-protocol/. The packet rules live in
:mod:`tidings.protocol.engineio`; this module does the I/O and the timing.

Each session has one :class:`~tidings.server.outbox.Outbox`, whatever its transport: a packet encoded
once (for a broadcast, once for all recipients) is appended as the same object to every recipient's
outbox. A pending long-poll takes the whole outbox as one payload; on a WebSocket the outbox's writer
drains it frame by frame.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from typing import Any, Protocol

import orjson

from tidings.api.request import Headers
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.server.limits import AddressLimits, Throttled
from tidings.server.outbox import DirectSend, Outbox, direct_send
from tidings.server.responses import JSON, TEXT, OriginCheck, Receive, Scope, Send, reject_websocket, respond
from tidings.settings import Settings

logger = logging.getLogger("tidings.engine")


# WebSocket close codes (RFC 6455 §7.4.1).
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


class State(enum.Enum):
    OPEN = "open"
    UPGRADING = "upgrading"  # probe answered, waiting for the client's UPGRADE packet
    CLOSED = "closed"


class EngineHandler(Protocol):
    """What the layer above (Socket.IO) hears from the engine. Called on the event loop."""

    def session_opened(self, session: Session) -> None: ...

    def message_received(self, session: Session, data: str | bytes) -> None:
        """May raise ProtocolError: the session is then closed with that reason."""

    def session_closed(self, session: Session, reason: str) -> None: ...


class Session:
    """One Engine.IO session. All methods run on the event loop thread."""

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
        "sid",
        "state",
        "transport",
    )

    def __init__(self, engine: Engine, sid: str, transport: str, scope: Scope, address: str | None) -> None:
        self.engine = engine
        self.sid = sid
        self.transport = transport
        self.scope = scope
        self.address = address  # what the per-address limits count it under (None: not counted)
        self.state = State.OPEN
        self.data: Any = None  # the Socket.IO layer's per-session state
        self.outbox = Outbox(engine.settings.max_buffer, self._write_failed)
        self._poll: asyncio.Future[None] | None = None
        self._posting = False  # a polling POST is being handled
        self._handle: asyncio.TimerHandle | None = None
        self._held: asyncio.Future[None] | None = None  # set while reading is held (hold_reading)
        self._direct: DirectSend | None = None  # the WebSocket's synchronous face, once attached

    # -- sending ---------------------------------------------------------------------------------

    def send(self, packet: str | bytes) -> None:
        """Queue one encoded packet (see :mod:`tidings.protocol.engineio` for the form)."""
        if self.state is State.CLOSED:
            return
        if not self.outbox.put(packet):
            self.close("send buffer full", POLICY_VIOLATION)
            return
        poll = self._poll  # _wake_poll, inline: this runs once per recipient of every broadcast
        if poll is not None and not poll.done():
            poll.set_result(None)

    def send_many(self, packets: list[str | bytes]) -> None:
        """Queue packets that belong together (a binary packet and its attachments)."""
        if self.state is State.CLOSED:
            return
        if not self.outbox.put_many(packets):
            self.close("send buffer full", POLICY_VIOLATION)
            return
        self._wake_poll()

    def _wake_poll(self) -> None:
        if self._poll is not None and not self._poll.done():
            self._poll.set_result(None)

    def _write_failed(self) -> None:
        self.close("transport error")

    def _take_payload(self) -> str:
        return eio.encode_payload(self.outbox.take())

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

    # -- heartbeat (EIO §"Heartbeat") --------------------------------------------------------------

    def _schedule_ping(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.engine.settings.ping_interval, self._ping)

    def _ping(self) -> None:
        if self.state is State.CLOSED:
            return
        self.send(eio.PING)
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.engine.settings.ping_timeout, self.close, "ping timeout")

    def _pong(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._schedule_ping()

    # -- closing ---------------------------------------------------------------------------------

    def close(self, reason: str, code: int = NORMAL_CLOSURE) -> None:
        """End the session: flush what is queued, then close the transport. Idempotent."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if self._handle is not None:
            self._handle.cancel()
        self.engine.sessions.pop(self.sid, None)
        self.engine._release(self.address)
        if self.transport == "websocket":
            self.outbox.close(code, reason)
        else:
            if not self.outbox.put(eio.CLOSE):  # full: drop what a stalled client would never read
                self.outbox.take()
                self.outbox.put(eio.CLOSE)
            self._wake_poll()
        logger.debug("session %s closed: %s", self.sid, reason)
        self.engine.handler.session_closed(self, reason)
        self.release_reading()  # whoever waits to read finds the session closed


class Engine:
    """Serves the Engine.IO endpoint; one per :class:`tidings.Server`."""

    def __init__(self, settings: Settings, handler: EngineHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.sessions: dict[str, Session] = {}
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

    def _open(self, transport: str, scope: Scope, address: str | None) -> Session:
        sid = secrets.token_urlsafe(15)
        session = Session(self, sid, transport, scope, address)
        self.sessions[sid] = session
        upgrades = ["websocket"] if transport == "polling" and self._offers("websocket") else []
        settings = self.settings
        session.send(
            eio.open_packet(
                sid, upgrades, settings.ping_interval, settings.ping_timeout, settings.max_payload
            )
        )
        session._schedule_ping()
        self.handler.session_opened(session)
        return session

    def _admit(self, scope: Scope) -> tuple[str | None, tuple[int, bytes] | None]:
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

    def _release(self, address: str | None) -> None:
        """A session :meth:`_admit` let in is gone."""
        if address is not None:
            self.limits.release(address)

    def _offers(self, transport: str) -> bool:
        return transport in self.settings.transports

    def receive_packet(self, session: Session, packet: eio.Packet) -> None:
        """Act on one packet from the client (either transport)."""
        match packet.type:
            case eio.PacketType.MESSAGE:
                self.handler.message_received(session, packet.data)
            case eio.PacketType.PONG:
                session._pong()
            case eio.PacketType.CLOSE:
                session.close("client close")
            case eio.PacketType.NOOP:
                pass
            case _:
                raise ProtocolError(f"unexpected {packet.type.name} packet")

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            session.close("server shutdown", GOING_AWAY)

    # -- HTTP long-polling (EIO §"HTTP long-polling") ------------------------------------------------

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope.get("headers", []))
        allowed, origin = self.origins.allows(scope, headers)
        if not allowed:
            await respond(send, 403, eio.ErrorCode.FORBIDDEN.body(), JSON)
            return
        cors = self.origins.headers(origin)
        method = scope["method"]
        if method == "OPTIONS":
            await _preflight(send, headers, cors)
            return
        try:
            info = eio.parse_query(scope.get("query_string", b""))
            if info.transport != "polling" or not self._offers("polling"):
                raise eio.RequestError(eio.ErrorCode.UNKNOWN_TRANSPORT)
            if info.sid is None:
                if method != "GET":
                    raise eio.RequestError(eio.ErrorCode.BAD_HANDSHAKE_METHOD)
                address, refusal = self._admit(scope)
                if refusal is not None:
                    await respond(send, *refusal, JSON, cors)
                    return
                opened = self._open("polling", scope, address)
                await respond(send, 200, opened._take_payload().encode(), TEXT, cors)
                return
            found = self.sessions.get(info.sid)
            if found is None:
                raise eio.RequestError(eio.ErrorCode.UNKNOWN_SID)
            session = found
            if session.transport != "polling" or method not in ("GET", "POST"):
                raise eio.RequestError(eio.ErrorCode.BAD_REQUEST)
        except eio.RequestError as error:
            await respond(send, 400, error.code.body(), JSON, cors)
            return
        if method == "GET":
            await self._poll_get(session, receive, send, cors)
        else:
            await self._poll_post(session, receive, send, cors)

    async def _poll_get(
        self, session: Session, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        if session._poll is not None:
            # EIO: a second concurrent GET is a client error; the session cannot go on.
            session.close("overlapping polling requests")
            await respond(send, 400, eio.ErrorCode.BAD_REQUEST.body(), JSON, cors)
            return
        if not session.outbox and session.state is State.OPEN:
            loop = asyncio.get_running_loop()
            poll = session._poll = loop.create_future()
            # A client that drops the request (page closed, network change) must not take queued
            # packets with it: wait for its disconnect too, and then leave the queue for the next GET.
            gone = loop.create_task(_wait_for_disconnect(receive))
            try:
                await asyncio.wait((poll, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                session._poll = None
                gone.cancel()
            if not poll.done():
                return
        # While an upgrade is under way, the poll is answered with a NOOP so that the client can
        # pause polling; queued packets wait for the WebSocket (EIO §"Upgrade").
        body = eio.NOOP if session.state is State.UPGRADING else session._take_payload()
        await respond(send, 200, body.encode(), TEXT, cors)

    async def _poll_post(
        self, session: Session, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        if session._posting:
            # EIO: a client sends one POST at a time; overlapping ones would bypass hold_reading.
            session.close("overlapping polling requests")
            await respond(send, 400, eio.ErrorCode.BAD_REQUEST.body(), JSON, cors)
            return
        session._posting = True
        try:
            await self._take_post(session, receive, send, cors)
        finally:
            session._posting = False

    async def _take_post(
        self, session: Session, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            body = await asyncio.wait_for(
                _read_body(receive, self.settings.max_payload), self.settings.body_timeout
            )
        except asyncio.TimeoutError:
            # A body trickling in would hold the connection, and what came of it, for as long as
            # the client likes: even past the session's end, which nothing else tells the request.
            session.close("request body timeout")
            await respond(send, 408, b"request body timeout", TEXT, cors)
            return
        if body is None:
            session.close("payload too large")
            await respond(send, 413, b"payload too large", TEXT, cors)
            return
        try:
            packets = eio.decode_payload(body.decode("utf-8"))
            for packet in packets:
                if session.state is State.CLOSED:
                    break
                self.receive_packet(session, packet)
        except (ProtocolError, UnicodeDecodeError) as error:
            reason = str(error) if isinstance(error, ProtocolError) else "invalid UTF-8"
            session.close(reason, PROTOCOL_ERROR)
            await respond(send, 400, reason.encode(), TEXT, cors)
            return
        await session.readable()  # the client's next POST waits for its handlers to catch up
        await respond(send, 200, b"ok", b"text/html", cors)

    # -- WebSocket --------------------------------------------------------------------------------

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = Headers(scope.get("headers", []))
        try:
            if not self.origins.allows(scope, headers)[0]:
                raise eio.RequestError(eio.ErrorCode.FORBIDDEN)
            info = eio.parse_query(scope.get("query_string", b""))
            if info.transport != "websocket" or not self._offers("websocket"):
                raise eio.RequestError(eio.ErrorCode.UNKNOWN_TRANSPORT)
            session = None
            if info.sid is not None:
                session = self.sessions.get(info.sid)
                if session is None:
                    raise eio.RequestError(eio.ErrorCode.UNKNOWN_SID)
                if session.transport != "polling" or session.state is not State.OPEN:
                    raise eio.RequestError(eio.ErrorCode.BAD_REQUEST)
        except eio.RequestError as error:
            status = 403 if error.code is eio.ErrorCode.FORBIDDEN else 400
            await reject_websocket(scope, send, status, error.code.body())
            return
        direct = direct_send(scope)
        if session is None:
            address, refusal = self._admit(scope)
            if refusal is not None:
                await reject_websocket(scope, send, *refusal)
                return
            try:
                await send({"type": "websocket.accept"})
            except BaseException:
                self._release(address)  # no session after all
                raise
            session = self._open("websocket", scope, address)
            session.attach(send, direct)
        else:
            await send({"type": "websocket.accept"})
            if not await self._upgrade(session, direct, receive, send):
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
        try:
            await asyncio.wait_for(self._probe(session, receive, send), self.settings.upgrade_timeout)
        except (ProtocolError, asyncio.TimeoutError, _Disconnected) as error:
            if session.state is State.UPGRADING:
                session.state = State.OPEN
                session._wake_poll()
            logger.debug("session %s: upgrade failed: %r", session.sid, error)
            if not isinstance(error, _Disconnected):
                await send({"type": "websocket.close", "code": PROTOCOL_ERROR})
            return False
        if session.state is State.CLOSED:
            await send({"type": "websocket.close", "code": NORMAL_CLOSURE})
            return False
        session.state = State.OPEN
        session.transport = "websocket"
        session.attach(send, direct)
        return True

    @staticmethod
    async def _probe(session: Session, receive: Receive, send: Send) -> None:
        if await _receive_text(receive) != eio.PING + eio.PROBE:
            raise ProtocolError("expected a probe")
        await send({"type": "websocket.send", "text": eio.PONG_PROBE})
        if session.state is not State.OPEN:
            raise ProtocolError("session closed during upgrade")
        session.state = State.UPGRADING
        if session._poll is not None and not session._poll.done():
            session._poll.set_result(None)
        if await _receive_text(receive) != str(int(eio.PacketType.UPGRADE)):
            raise ProtocolError("expected an upgrade packet")

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
        if session.state is State.CLOSED:
            return  # closing: wait for the disconnect that follows our close frame
        if len(data) > self.settings.max_payload:
            session.close("message too big", MESSAGE_TOO_BIG)
            return
        try:
            self.receive_packet(session, eio.decode_packet(data))
        except ProtocolError as error:
            logger.info("session %s: protocol error: %s", session.sid, error)
            session.close(str(error), PROTOCOL_ERROR)


class _Disconnected(Exception):
    """The WebSocket peer left while we waited for a message."""


_AT_CAPACITY = b'{"code":3,"message":"Server at capacity"}'


async def _receive_text(receive: Receive) -> str | None:
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise _Disconnected
    return message.get("text")


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None if it is larger than ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _preflight(send: Send, headers: Headers, cors: list[tuple[bytes, bytes]]) -> None:
    allow = [(b"access-control-allow-methods", b"GET, POST, OPTIONS"), *cors]
    requested = headers.get("access-control-request-headers")
    if requested:
        allow.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await respond(send, 204, b"", TEXT, allow)
