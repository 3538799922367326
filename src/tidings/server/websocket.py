"""tidings' own WebSocket protocol for uvicorn (``uvicorn.Config(ws=FastWebSocketProtocol)``).

uvicorn hands every ``Upgrade: websocket`` request to the ``ws`` protocol class: it builds one with
``(config=, server_state=, app_state=)``, calls ``connection_made(transport)``, replays the request head
through ``data_received`` and gives it the transport. This class moves the bytes and runs the timers;
what to send and when is decided by the sans-I/O state machine it derives from
(:class:`tidings.protocol.websocket.ServerConnection`), and the ASGI app sees the usual ``websocket``
scope, ``receive`` and ``send`` (:class:`tidings.server.asgi_websocket.AsgiWebSocket`), so the tidings
Server and the user's own ASGI WebSocket routes work unchanged, including the
``websocket.http.response`` extension (a refused upgrade answered with an HTTP status).

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
``uvicorn --ws tidings.server.websocket:FastWebSocketProtocol`` the defaults apply):

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
import logging
import weakref
from collections.abc import Hashable
from typing import Any

from tidings.message import Burst, BurstSink, frame_for
from tidings.protocol import websocket as ws
from tidings.protocol.websocket import State
from tidings.server.asgi_websocket import TEXT_PLAIN, AsgiWebSocket
from tidings.server.guard import DEFAULT_SETTINGS, Linger, Slot
from tidings.server.limits import Throttled
from tidings.server.outbox import FASTSEND
from tidings.settings import Settings

__all__ = ["FastWebSocketProtocol", "State"]

logger = logging.getLogger("uvicorn.error")

# Read once for send_frame, which runs once per recipient of a broadcast, and data_received, once per
# read: on Python 3.11, reading an Enum member off its class costs ~70 ns.
_OPEN = State.OPEN
_HANDSHAKE = State.HANDSHAKE
_CLOSING = State.CLOSING

_control_flood = Throttled(
    "WebSocket from %s closed: more than %d pings and pongs in a minute (websocket_control_frames_per_minute)"
)


class _Flusher:
    """Writes the pending frames of every connection that has some, once per loop iteration."""

    __slots__ = ("dirty", "loop", "scheduled", "written")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[FastWebSocketProtocol] = []
        self.scheduled = False
        self.written = 0  # bytes the connections of this loop wrote: handshake answers, frames

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


def bytes_written(loop: asyncio.AbstractEventLoop) -> int:
    """Bytes the WebSocket connections on ``loop`` wrote: their handshake answers and frames."""
    flusher = _flushers.get(loop)
    return flusher.written if flusher is not None else 0


class FastWebSocketProtocol(AsgiWebSocket, asyncio.Protocol):
    """One WebSocket connection under uvicorn: its transport, its writes and its timers."""

    __slots__ = (
        "_burst",
        "_drain",
        "_flusher",
        "_linger",
        "_paused",
        "_pending",
        "_pending_size",
        "_read_paused",
        "_reading_held",
        "connection_slot",
        "connections",
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
        super().__init__(config, server_state, app_state, _loop or asyncio.get_event_loop(), settings)
        self.connections = server_state.connections
        self._read_paused = False  # we asked the transport to stop reading
        self._reading_held = False  # the detached app is behind with what it was handed (hold_reading)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._paused = False  # the transport asked us to stop writing (pause_writing)
        self._drain: asyncio.Future[None] | None = None
        self._linger: Linger | None = None  # aborts the connection if its peer stops taking our bytes
        # Released when the connection is lost: its count against max_connections_per_address.
        self.connection_slot: Slot | None = None
        self._flusher = _flusher(self.loop)
        # The burst this connection is in, with its sink and wire form (see enter_burst).
        self._burst: tuple[Burst, BurstSink, Hashable] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.state is not State.CLOSED:
            self.end()
        self._pending = []
        self._pending_size = 0
        self._burst = None
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
        if self.state is _HANDSHAKE:
            data = self._read_head(data)
            if not data:
                return
        events = self.receive_data(data)
        if self.parser.control_frames:  # pings or pongs came: count them (the clock is read only then)
            events = self.count_control_frames(events, self.loop.time())
        for event in events:
            if type(event) is ws.Message:
                if self.state is _CLOSING:
                    continue  # the app is past websocket.close: what still comes is dropped
                on_message = self._on_message
                if on_message is not None:
                    try:  # _call's, without a frame of its own: this runs once per message
                        on_message(event.data)
                    except Exception:
                        self._callback_failed()
                elif isinstance(event.data, str):
                    self._deliver({"type": "websocket.receive", "text": event.data})
                else:
                    self._deliver({"type": "websocket.receive", "bytes": event.data})
            elif type(event) is ws.Ping:
                self._answer(event)
            elif type(event) is ws.Close:
                self._close_received(event)
            elif isinstance(event, ws.Failure):  # the last event
                if type(event) is ws.ControlFrameFlood:
                    client = self.scope.get("client")
                    _control_flood(client[0] if client else None, self.control_frames_per_minute)
                self._fail_connection(event.code, event.reason)

    def _read_head(self, data: bytes) -> bytes:
        """Take the request head (uvicorn replays it); what follows it, if any, are frames."""
        try:
            received = self.receive_head(data)
        except ws.HandshakeError as error:
            self._refuse(error)
            return b""
        if received is None:
            return b""
        request, rest = received
        self._start_app(request)
        return rest

    def _answer(self, ping: ws.Ping) -> None:
        """The pong to the pings of one read, counted against max_buffer as our other frames are."""
        pong = self.pong_for(ping)
        if pong is None:
            return
        unsent = self._pending_size + self.transport.get_write_buffer_size()
        if unsent + len(pong) > self.settings.max_buffer:
            self._fail_connection(ws.POLICY_VIOLATION, "send buffer full")
        else:
            self._push(pong)

    # -- the synchronous send (the tidings.fastsend extension) ------------------------------------------

    def send_frame(self, data: str | bytes, limit: int) -> bool:
        """Queue ``data`` as one text (``str``) or binary frame, to be written this loop iteration.

        False, and nothing queued, if the connection's unsent bytes would pass ``limit``: the caller
        then closes the connection. Once the connection is closing, frames are dropped (True).
        """
        if self.state is not _OPEN:
            return True
        if self._burst is not None:
            self._leave_burst()
        frame = frame_for(data)
        size = self._pending_size + len(frame)
        if size > limit or (self._paused and size + self.transport.get_write_buffer_size() > limit):
            return False
        if not self._pending:
            self._flusher.add(self)
        self._pending.append(frame)
        self._pending_size = size
        return True

    def enter_burst(self, burst: Burst, sink: BurstSink, form: Hashable) -> bool:
        """Take part in ``burst`` (see :class:`~tidings.message.Burst`): its frames come in one
        :meth:`write_burst`, unless a frame is sent here before, which takes the connection out."""
        if self.state is not _OPEN or self._burst is not None:
            return False
        self._burst = (burst, sink, form)
        return True

    def write_burst(self, data: bytes, limit: int) -> bool:
        """Write a burst's frames after what is pending; False, and nothing written, as
        :meth:`send_frame`."""
        self._burst = None
        if self.state is not _OPEN:
            return True
        size = self._pending_size + len(data)
        if size > limit or (self._paused and size + self.transport.get_write_buffer_size() > limit):
            return False
        if self._pending:  # queued before the burst began: goes first, with the loop's flush
            self._pending.append(data)
            self._pending_size = size
        else:
            self._flusher.written += len(data)
            self.transport.write(data)
        return True

    def _leave_burst(self) -> None:
        """A frame is about to be queued: first what the burst holds for this connection so far."""
        assert self._burst is not None
        burst, sink, form = self._burst
        self._burst = None
        frames = burst.leave(sink, form)
        if frames:
            self._push(frames)

    def close(self, code: int = ws.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame after what is pending (as ``websocket.close``, but synchronous)."""
        if self.state is State.OPEN:
            self._send_close(code, reason)

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
        if self._burst is not None:
            self._leave_burst()
        if not self._pending:
            self._flusher.add(self)
        self._pending.append(frame)
        self._pending_size += len(frame)

    def _push_data(self, data: str | bytes) -> None:
        self._push(frame_for(data))

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._flusher.written += self._pending_size
        self._pending = []
        self._pending_size = 0
        self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write_now(self, data: bytes) -> None:
        """Write ``data`` after what is pending, without waiting for the loop iteration's flush."""
        if self._burst is not None:
            self._leave_burst()
        self._flush()
        self._flusher.written += len(data)
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
        self._write_now(self.start_closing(code, reason))
        self._close_code = code
        self._set_reading()
        self._start_linger()

    def _close_received(self, close: ws.Close) -> None:
        answer = self.answer_close(close)
        if answer is not None:
            self._write_now(answer)
        self._disconnect(close.code, close.reason)
        self._close_transport()  # §7.1.1: the server closes the TCP connection first

    def _fail_connection(self, code: int, reason: str) -> None:
        """The client broke the protocol (§7.1.7): close with ``code`` and drop the connection."""
        logger.debug("WebSocket protocol error (%d): %s", code, reason)
        close = self.fail(code, reason)
        if close is not None:
            self._write_now(close)
        self._disconnect(code, reason)
        self._close_transport()

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (service restart), or refuse a pending upgrade."""
        if self.state is State.CONNECTING:
            self._write_http(500, [TEXT_PLAIN], b"")
            return
        if self.state is State.OPEN:
            self._write_now(self.start_closing(ws.SERVICE_RESTART))
            self._disconnect(ws.SERVICE_RESTART, "")
        self._close_transport()

    def _close_transport(self) -> None:
        """Close the TCP connection once what is queued is written, or abort it if the peer stops
        taking that (close_timeout). Once closed, nothing."""
        if self.state is State.CLOSED:
            return
        self.end()
        self._flush()
        self.transport.close()
        if self.transport.get_write_buffer_size():  # else the connection is gone at once
            self._start_linger()

    def _start_linger(self) -> None:
        if self._linger is None:
            self._linger = Linger(self.loop, self.transport, self.settings.close_timeout)
