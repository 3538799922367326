"""tidings' own WebSocket protocol for uvicorn (``uvicorn.Config(ws=FastWebSocketProtocol)``).

uvicorn hands every ``Upgrade: websocket`` request to the ``ws`` protocol class: it builds one with
``(config=, server_state=, app_state=)``, calls ``connection_made(transport)``, replays the request head
through ``data_received`` and gives it the transport. This class then speaks RFC 6455 itself (framing
in :mod:`tidings.protocol.websocket`) and runs the ASGI app with the usual ``websocket`` scope,
``receive`` and ``send``, so the tidings Server and the user's own ASGI WebSocket routes work unchanged,
including the ``websocket.http.response`` extension (a refused upgrade answered with an HTTP status).

What makes it fast is the write side:

- A frame is built once per payload object: a broadcast queues the same ``str`` on every recipient,
  and the last payload's frame is kept, so the other recipients reuse it.
- Frames are not written one by one: they are appended to the connection's pending list, and once per
  loop iteration one callback writes each connection's pending frames in one ``transport.write``.
- ``scope["extensions"]["tidings.fastsend"]`` is this protocol itself: :meth:`send_frame` queues a
  frame synchronously, so tidings' outboxes need no writer task and a broadcast to N sockets is N
  list appends.
- Buffers are bounded: :meth:`send_frame` refuses a frame once the connection's unsent bytes (pending
  plus the transport's buffer) would pass the caller's limit, and the caller closes the connection
  (tidings: 1008 "send buffer full"). ``await send(...)`` waits while the transport is paused
  (``pause_writing``), as any ASGI server's does.

Limits: ``config.ws_max_size`` bounds one incoming message (1009 past it); the others come from
the app's :class:`~tidings.Settings`, which ``tidings run`` passes as ``settings=`` (under plain
``uvicorn --ws tidings.server.fastws:FastWebSocketProtocol`` the defaults apply):

- ``max_buffer`` bounds the unsent bytes of pongs too: one that would pass it closes with 1008.
  Pings that arrive together get one pong (RFC 6455 §5.5.3), and while the transport is paused for
  writing (the peer does not read) the peer is not read either, so it cannot make us answer more;
- ``websocket_control_frames_per_minute``: one ping or pong more closes with 1008 "too many control
  frames";
- ``close_timeout``: a close frame of ours unanswered that long, or a closed connection whose peer
  takes none of what is left to send for that long, is aborted (:class:`~tidings.server.guard.Linger`);
- ``websocket_max_queue``: received messages the app has not read before reading pauses;
- ``max_request_head``: the upgrade request's head (431 past it).

Server-side keepalive pings (``ws_ping_interval``) and per-message deflate are not implemented:
``tidings run`` turns both off (Engine.IO has its own heartbeat).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from tidings.protocol import websocket as ws
from tidings.server.guard import DEFAULT_SETTINGS, Linger, Slot
from tidings.server.limits import Throttled
from tidings.settings import Settings

logger = logging.getLogger("uvicorn.error")

#: ASGI scope extension naming the synchronous send (see :meth:`FastWebSocketProtocol.send_frame`).
FASTSEND = "tidings.fastsend"
_CONTROL_WINDOW = 60.0  # seconds: websocket_control_frames_per_minute counts control frames per minute
_control_flood = Throttled(
    "WebSocket from %s closed: more than %d pings and pongs in a minute (websocket_control_frames_per_minute)"
)
# The received-messages queue of a connection with none waiting: shared, never written to (an empty
# deque holds a 64-slot block, ~0.7 KiB per idle connection).
_NO_MESSAGES: deque[dict[str, Any]] = deque()
_HTTP_RESPONSE_EXTENSION: dict[str, Any] = {}
_NO_SUBPROTOCOLS: list[str] = []  # shared by every scope without any (ASGI apps only read it)
_local_addresses: dict[Any, Any] = {}  # the server's address, one tuple for all its connections


class State(enum.Enum):
    HANDSHAKE = "handshake"  # reading the request head
    CONNECTING = "connecting"  # the app decides: accept, close or an HTTP response
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out, waiting for the client's
    CLOSED = "closed"


# The frame of the last payload, kept so that a broadcast (one object, many recipients) is framed once.
# Only immutable payloads (str, bytes) are kept; the reference keeps the identity check sound. One
# tuple, replaced whole, so that servers on event loops in other threads never see a payload beside
# another payload's frame.
_last: tuple[object, bytes] = (None, b"")


def frame_for(data: str | bytes | bytearray | memoryview) -> bytes:
    """The text (``str``) or binary frame of ``data``, built once per payload object in a row."""
    global _last
    payload, frame = _last
    if data is payload:
        return frame
    if isinstance(data, str):
        frame = ws.text_frame(data)
    elif isinstance(data, bytes):
        frame = ws.binary_frame(data)
    else:
        return ws.binary_frame(bytes(data))
    _last = (data, frame)
    return frame


class _Flusher:
    """Writes the pending frames of every connection that has some, once per loop iteration."""

    __slots__ = ("dirty", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[FastWebSocketProtocol] = []
        self.scheduled = False

    def add(self, protocol: FastWebSocketProtocol) -> None:
        self.dirty.append(protocol)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for protocol in dirty:
            protocol._flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class FastWebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection under uvicorn, speaking ASGI to the app."""

    __slots__ = (
        "_buffer",
        "_close_code",
        "_control_frames",
        "_control_window_end",
        "_disconnected",
        "_drain",
        "_flusher",
        "_http_response",
        "_linger",
        "_messages",
        "_on_close",
        "_on_message",
        "_paused",
        "_pending",
        "_pending_size",
        "_queue_full",
        "_read_paused",
        "_reading_held",
        "_waiter",
        "accept_key",
        "app",
        "app_state",
        "config",
        "connection_slot",
        "connections",
        "default_headers",
        "loop",
        "parser",
        "scope",
        "settings",
        "state",
        "tasks",
        "transport",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        settings: Settings = DEFAULT_SETTINGS,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover
        self.config = config
        self.settings = settings
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.state = State.HANDSHAKE
        self.scope: dict[str, Any] = {}
        self.accept_key = b""
        self.parser = ws.Parser(config.ws_max_size)
        self._buffer = b""
        self._messages = _NO_MESSAGES
        self._waiter: asyncio.Future[None] | None = None
        self._disconnected = False  # the app has been given websocket.disconnect
        self._close_code = ws.ABNORMAL_CLOSURE
        self._read_paused = False  # we asked the transport to stop reading
        self._queue_full = False  # the app has websocket_max_queue messages unread
        self._reading_held = False  # the detached app is behind with what it was handed (hold_reading)
        self._control_frames = 0  # pings and pongs received in the current minute
        self._control_window_end = 0.0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._paused = False  # the transport asked us to stop writing (pause_writing)
        self._drain: asyncio.Future[None] | None = None
        self._linger: Linger | None = None  # aborts the connection if its peer stops taking our bytes
        # Released when the connection is lost: its count against max_connections_per_address.
        self.connection_slot: Slot | None = None
        self._http_response: list[Any] | None = None  # status, headers, body chunks
        self._flusher = _flusher(self.loop)
        # Set by detach(): the app takes messages by callback and its coroutine has returned.
        self._on_message: Callable[[str | bytes], None] | None = None
        self._on_close: Callable[[int, str], None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.state = State.CLOSED
        self._pending = []
        self._pending_size = 0
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.connection_slot is not None:
            self.connection_slot.release()
            self.connection_slot = None
        self._disconnect(ws.ABNORMAL_CLOSURE, "")
        self._wake_writers()
        self._on_message = None  # break the cycles through the app's session objects
        extensions = self.scope.get("extensions")
        if extensions:  # the scope may outlive us (the app's objects hold it)
            extensions.pop(FASTSEND, None)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self._paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._set_reading()
        self._wake_writers()

    def _set_reading(self) -> None:
        """Read the peer unless the app has enough unread messages (queued here, or handed over but
        not handled yet: :meth:`hold_reading`), or the peer does not take what we write (it is not
        read either: its pings would only make more to write). Once closing, read: the peer's close
        frame has to come through."""
        if self.state is State.CLOSED:
            return
        pause = self.state is not State.CLOSING and (self._paused or self._queue_full or self._reading_held)
        if pause is not self._read_paused:
            self._read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.state is State.HANDSHAKE:
            data = self._read_head(data)
        if not data or self.state is State.CLOSED:
            return
        try:
            events = self.parser.receive(data)
        except ws.WebSocketError as error:
            self._fail(error.code, error.reason)
            return
        ping: ws.Ping | None = None
        for event in events:
            if type(event) is ws.Message:
                if self.state is State.CLOSING:
                    continue  # the app is past websocket.close: what still comes is dropped
                if self._on_message is not None:
                    self._call(self._on_message, event.data)
                elif isinstance(event.data, str):
                    self._deliver({"type": "websocket.receive", "text": event.data})
                else:
                    self._deliver({"type": "websocket.receive", "bytes": event.data})
            elif type(event) is ws.Close:
                self._close_received(event)
            elif not self._control_frame_allowed():
                self._fail(ws.POLICY_VIOLATION, "too many control frames")
                return
            elif type(event) is ws.Ping:
                ping = event
            # a Pong: we send no pings, an unsolicited pong is ignored (§5.5.3)
        if ping is not None and self.state is State.OPEN:
            self._answer(ping)

    def _control_frame_allowed(self) -> bool:
        """Count a ping or pong; False once there are more than allowed in the current minute."""
        now = self.loop.time()
        if now >= self._control_window_end:
            self._control_window_end = now + _CONTROL_WINDOW
            self._control_frames = 0
        self._control_frames += 1
        limit = self.settings.websocket_control_frames_per_minute
        if self._control_frames <= limit:
            return True
        client = self.scope.get("client")
        _control_flood(client[0] if client else None, limit)
        return False

    def _answer(self, ping: ws.Ping) -> None:
        """The pong to the last of the pings received together (§5.5.2, §5.5.3), counted against
        max_buffer as our other frames are."""
        pong = ws.pong_frame(ping.payload)
        unsent = self._pending_size + self.transport.get_write_buffer_size()
        if unsent + len(pong) > self.settings.max_buffer:
            self._fail(ws.POLICY_VIOLATION, "send buffer full")
        else:
            self._push(pong)

    # -- the handshake -------------------------------------------------------------------------------

    def _read_head(self, data: bytes) -> bytes:
        """Take the request head (uvicorn replays it); what follows it, if any, are frames."""
        self._buffer += data
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if not found:
            if len(self._buffer) > self.settings.max_request_head:
                self._refuse(431, b"request head too large")
            return b""
        self._buffer = b""
        self._handshake(head)
        return rest

    def _handshake(self, head: bytes) -> None:
        try:
            request = ws.parse_request(head)
            self.accept_key = ws.check_request(request)
        except ws.HandshakeError as error:
            headers = [(b"sec-websocket-version", b"13")] if error.status == 426 else []
            self._refuse(error.status, error.reason.encode(), headers)
            return
        transport = self.transport
        server = get_local_addr(transport)
        raw_path, _, query = request.target.partition("?")
        root_path = self.config.root_path
        subprotocols = [token.decode("latin-1") for token in request.tokens(b"sec-websocket-protocol")]
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": _local_addresses.setdefault(server, server),
            "client": get_remote_addr(transport),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": request.headers,
            "subprotocols": [token for token in subprotocols if token] or _NO_SUBPROTOCOLS,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": _HTTP_RESPONSE_EXTENSION, FASTSEND: self},
        }
        self.state = State.CONNECTING
        self._deliver({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _refuse(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer the upgrade request with an HTTP error and close (no app involved)."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])]
        self._write_http(status, headers, body)

    def _write_http(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        if self.state is not State.CLOSED:
            self.transport.write(ws.http_response(status, phrase, [*self.default_headers, *headers], body))
            self._close_transport()
        self._disconnect(ws.ABNORMAL_CLOSURE, "")

    # -- ASGI -------------------------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
            if self.state is State.CONNECTING:
                self._write_http(500, [(b"content-type", b"text/plain; charset=utf-8")], b"")
            elif self.state is State.OPEN:
                self._send_close(ws.INTERNAL_ERROR, "")
        else:
            if self.state is State.CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")
                self._write_http(500, [(b"content-type", b"text/plain; charset=utf-8")], b"")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self._on_message is not None and self.state is not State.CONNECTING:
            return  # detached: the connection lives on without the app's coroutine
        if self.state is State.OPEN:
            self._send_close(ws.NORMAL_CLOSURE, "")
        if self.state is not State.CLOSED:
            self._close_transport()

    async def receive(self) -> dict[str, Any]:
        messages = self._messages
        if not messages:
            if self._disconnected:
                return {"type": "websocket.disconnect", "code": self._close_code}
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        messages = self._messages  # a new deque if it was empty before
        message = messages.popleft()
        if not messages:
            self._messages = _NO_MESSAGES
        if self._queue_full and len(messages) < self.settings.websocket_max_queue // 2:
            self._queue_full = False
            self._set_reading()
        return message

    async def send(self, message: Any) -> None:
        kind = message["type"]
        state = self.state
        if state is State.OPEN:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                self._push(frame_for(data))
                if self._paused:
                    await self.wait_writable()
            elif kind == "websocket.close":
                self._send_close(message.get("code", ws.NORMAL_CLOSURE), message.get("reason") or "")
            else:
                raise RuntimeError(f"Expected 'websocket.send' or 'websocket.close', but got '{kind}'.")
        elif state is State.CONNECTING:
            self._send_connecting(message)
        elif state is State.CLOSING and kind == "websocket.close":
            pass  # closing already
        else:
            raise ClientDisconnected()

    def _send_connecting(self, message: Any) -> None:
        kind = message["type"]
        if self._http_response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected 'websocket.http.response.body', but got '{kind}'.")
            self._http_response[2].append(message.get("body", b""))
            if not message.get("more_body", False):
                status, headers, body = self._http_response
                names = {name.lower() for name, _ in headers}
                if b"content-type" not in names:
                    headers.append((b"content-type", b"text/plain; charset=utf-8"))
                self._log(str(status))
                self._write_http(status, headers, b"".join(body))
            return
        if kind == "websocket.accept":
            headers = [*self.default_headers, *message.get("headers", [])]
            subprotocol = message.get("subprotocol")
            if subprotocol:
                headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
            self._log("[accepted]")
            self.transport.write(ws.accept_response(self.accept_key, headers))
            self.state = State.OPEN
        elif kind == "websocket.close":
            self._log("403")
            self._write_http(403, [(b"content-type", b"text/plain; charset=utf-8")], b"")
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self._http_response = [status, list(message.get("headers", [])), []]
        else:
            raise RuntimeError(
                "Expected 'websocket.accept', 'websocket.close' or 'websocket.http.response.start', "
                f"but got '{kind}'."
            )

    def _log(self, what: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            client = self.scope.get("client")
            query = self.scope["query_string"].decode("latin-1")
            path = self.scope["path"] + ("?" + query if query else "")
            prefix = f"{client[0]}:{client[1]}" if client else ""
            logger.info('%s - "WebSocket %s" %s', prefix, path, what)

    # -- the synchronous send (the tidings.fastsend extension) ------------------------------------------

    def send_frame(self, data: str | bytes, limit: int) -> bool:
        """Queue ``data`` as one text (``str``) or binary frame, to be written this loop iteration.

        False, and nothing queued, if the connection's unsent bytes would pass ``limit``: the caller
        then closes the connection. Once the connection is closing, frames are dropped (True).
        """
        if self.state is not State.OPEN:
            return True
        frame = frame_for(data)
        size = self._pending_size + len(frame)
        if size > limit or (self._paused and size + self.transport.get_write_buffer_size() > limit):
            return False
        if not self._pending:
            self._flusher.add(self)
        self._pending.append(frame)
        self._pending_size = size
        return True

    def close(self, code: int = ws.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame after what is pending (as ``websocket.close``, but synchronous)."""
        if self.state is State.OPEN:
            self._send_close(code, reason)

    def detach(self, on_message: Callable[[str | bytes], None], on_close: Callable[[int, str], None]) -> None:
        """From now on, hand each message to ``on_message`` as it arrives, and the end of the
        connection (code, reason) to ``on_close``, instead of queueing them for ``receive``.

        The app's coroutine may then return and the connection stays open: an idle connection holds
        no task and no coroutine frames. Messages received before are handed over at once.
        """
        self._on_message = on_message
        self._on_close = on_close
        messages, self._messages = self._messages, _NO_MESSAGES
        self._queue_full = False
        self._set_reading()
        for message in messages:
            if message["type"] == "websocket.receive":
                data = message.get("text")
                self._call(on_message, message["bytes"] if data is None else data)
            elif message["type"] == "websocket.disconnect":
                self._call_close(message["code"], message.get("reason") or "")

    def _call(self, on_message: Callable[[str | bytes], None], data: str | bytes) -> None:
        try:
            on_message(data)
        except Exception:
            logger.exception("Exception in a WebSocket message callback")
            self._fail(ws.INTERNAL_ERROR, "")

    def _call_close(self, code: int, reason: str) -> None:
        on_close = self._on_close
        self._on_close = None
        if on_close is not None:
            try:
                on_close(code, reason)
            except Exception:
                logger.exception("Exception in a WebSocket close callback")

    def hold_reading(self, held: bool) -> None:
        """Stop reading the peer while ``held``: the detached app has more of its messages to handle
        than it lets in (TCP then slows the peer down). What one read brought is still handed over."""
        self._reading_held = held
        self._set_reading()

    async def wait_writable(self) -> None:
        """Return once the transport takes writes again (at once unless it is paused)."""
        while self._paused and self.state is not State.CLOSED:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain

    # -- writing ----------------------------------------------------------------------------------------

    def _push(self, frame: bytes) -> None:
        if not self._pending:
            self._flusher.add(self)
        self._pending.append(frame)
        self._pending_size += len(frame)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_size = 0
        self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write_now(self, data: bytes) -> None:
        """Write ``data`` after what is pending, without waiting for the loop iteration's flush."""
        self._flush()
        self.transport.write(data)

    def _wake_writers(self) -> None:
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # -- closing (RFC 6455 §7) --------------------------------------------------------------------------

    def _send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the transport closes on the client's answer or a timeout."""
        self._write_close(code, reason)
        self._close_code = code
        self._set_reading()
        self._start_linger()

    def _close_received(self, close: ws.Close) -> None:
        if self.state is State.OPEN:
            # §5.5.1: answer with a close frame, echoing the code.
            self._write_close(None if close.code == ws.NO_STATUS else close.code)
        self._disconnect(close.code, close.reason)
        self._close_transport()  # §7.1.1: the server closes the TCP connection first

    def _fail(self, code: int, reason: str) -> None:
        """The client broke the protocol (§7.1.7): close with ``code`` and drop the connection."""
        logger.debug("WebSocket protocol error (%d): %s", code, reason)
        if self.state is State.OPEN:
            self._write_close(code, reason)
        self._disconnect(code, reason)
        if self.state is not State.CLOSED:
            self._close_transport()

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (service restart), or refuse a pending upgrade."""
        if self.state is State.CONNECTING:
            self._write_http(500, [(b"content-type", b"text/plain; charset=utf-8")], b"")
            return
        if self.state is State.OPEN:
            self._write_close(ws.SERVICE_RESTART)
            self._disconnect(ws.SERVICE_RESTART, "")
        if self.state is not State.CLOSED:
            self._close_transport()

    def _write_close(self, code: int | None, reason: str = "") -> None:
        """Our close frame, after what is pending; the last frame we send (the app, told of the end
        next, may ask to close too)."""
        self._write_now(ws.close_frame(code, reason))
        self.state = State.CLOSING

    def _close_transport(self) -> None:
        """Close the TCP connection once what is queued is written, or abort it if the peer stops
        taking that (close_timeout)."""
        self.state = State.CLOSED
        self._flush()
        self.transport.close()
        if self.transport.get_write_buffer_size():  # else the connection is gone at once
            self._start_linger()

    def _start_linger(self) -> None:
        if self._linger is None:
            self._linger = Linger(self.loop, self.transport, self.settings.close_timeout)

    # -- receiving --------------------------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any]) -> None:
        messages = self._messages
        if messages is _NO_MESSAGES:
            messages = self._messages = deque()
        messages.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(messages) >= self.settings.websocket_max_queue and not self._queue_full:
            self._queue_full = True
            self._set_reading()

    def _disconnect(self, code: int, reason: str) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        self._close_code = code
        if self._on_close is not None:
            self._call_close(code, reason)
            return
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
