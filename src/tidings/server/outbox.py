"""The outbound queue of one connection, bounded in bytes, drained to an ASGI WebSocket.

An Engine.IO session and a plain WebSocket endpoint both write through one: frames are queued
without waiting (a broadcast appends the same object to every recipient's outbox), and a writer task
drains them in order. The task exists only while there is something to write, so an idle
connection costs no task. A long-polling session instead takes everything queued at once.

Under tidings' own WebSocket protocol (:mod:`tidings.server.websocket`) the scope offers a synchronous
send (the ``tidings.fastsend`` extension): frames then go straight to the connection's write buffer,
with no writer task, and the limit applies to that buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, MutableMapping
from typing import Any, Protocol

from tidings.message import Burst, BurstSink

logger = logging.getLogger("tidings.outbox")

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The ASGI scope extension that offers a :class:`DirectSend`.
FASTSEND = "tidings.fastsend"


class DirectSend(Protocol):
    """A transport's synchronous send (see :class:`tidings.server.websocket.FastWebSocketProtocol`)."""

    def send_frame(self, data: str | bytes, limit: int) -> bool:
        """Queue one frame; False (nothing queued) if the unsent bytes would pass ``limit``."""

    def enter_burst(self, burst: Burst, sink: BurstSink, form: Hashable) -> bool:
        """Mark the connection as in ``burst`` for ``sink`` (False: it is in one already, or
        closing): a frame sent before the burst is written takes it out (:meth:`Burst.leave`)."""

    def write_burst(self, data: bytes, limit: int) -> bool:
        """Queue a burst's frames (the connection is out of it then); False as :meth:`send_frame`."""

    async def wait_writable(self) -> None:
        """Return once the transport takes writes again."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after what is queued."""

    def detach(self, on_message: Callable[[str | bytes], None], on_close: Callable[[int, str], None]) -> None:
        """Hand messages to ``on_message`` and the end to ``on_close`` (the app's coroutine may return)."""

    def hold_reading(self, held: bool) -> None:
        """Stop (True) or go back to (False) reading the peer: the app is behind with its messages."""


def direct_send(scope: MutableMapping[str, Any]) -> DirectSend | None:
    """The synchronous send the server offers in ``scope``, if any."""
    extensions = scope.get("extensions")
    return extensions.get(FASTSEND) if extensions else None


class _Close:
    """Queue marker: close the WebSocket once everything queued before it is written."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


_ACCEPT = object()  # queue marker: accept the WebSocket upgrade before the first frame

Item = str | bytes | _Close | object
# The queue of an outbox with nothing queued: shared, never written to. An empty deque holds a
# 64-slot block (~0.7 KiB), which would be most of an idle connection's outbox.
_EMPTY: deque[Item] = deque()


class Outbox:
    """Frames (``str`` for text, ``bytes`` for binary) waiting to go out on one connection.

    ``limit`` bounds the bytes queued: :meth:`put` refuses a frame that would pass it, and the owner
    then closes the connection, so a stalled consumer costs at most that much memory.
    ``on_write_error`` is called (on the loop) if the transport fails under the writer.
    """

    __slots__ = ("_on_write_error", "_queue", "_send", "_size", "_writer", "direct", "limit")

    def __init__(self, limit: int, on_write_error: Callable[[], None]) -> None:
        self.limit = limit
        self._on_write_error = on_write_error
        self._queue = _EMPTY
        self._size = 0
        self._send: Send | None = None
        self._writer: asyncio.Task[None] | None = None
        #: The transport's synchronous send while frames go straight to it (None otherwise): read by
        #: the owner's per-recipient send, which then spares itself the call to :meth:`put`.
        self.direct: DirectSend | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: str | bytes) -> bool:
        """Queue one frame; False (and nothing queued) if it would pass the limit."""
        direct = self.direct
        if direct is not None:
            return direct.send_frame(frame, self.limit)
        size = self._size + len(frame)
        if size > self.limit:
            return False
        self._queued().append(frame)
        self._size = size
        self._drain()
        return True

    def put_many(self, frames: Iterable[str | bytes]) -> bool:
        """Queue frames that belong together (a binary packet and its attachments), or none."""
        direct = self.direct
        if direct is not None:
            for frame in frames:  # noqa: SIM110 (a loop, not all() over a generator: once per ack)
                if not direct.send_frame(frame, self.limit):
                    return False
            return True
        frames = list(frames)
        size = self._size + sum(len(frame) for frame in frames)
        if size > self.limit:
            return False
        self._queued().extend(frames)
        self._size = size
        self._drain()
        return True

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket after what is queued (once one is attached)."""
        direct, self.direct = self.direct, None
        if direct is not None and not self._queue:
            direct.close(code, reason)
            return
        self._queued().append(_Close(code, reason))
        self._drain()

    def take(self) -> list[str | bytes]:
        """Everything queued, for a long-polling response; the outbox is empty after."""
        frames = [frame for frame in self._queue if isinstance(frame, (str, bytes))]
        self._queue = _EMPTY
        self._size = 0
        return frames

    def attach(self, send: Send, accept: bool = False, direct: DirectSend | None = None) -> None:
        """From now on, drain to this ASGI WebSocket ``send``; first accept the upgrade if asked.

        With ``direct`` (the transport's synchronous send), frames go to it once the writer has
        written what was queued before.
        """
        if accept:
            self._queued().appendleft(_ACCEPT)
        self._send = send
        queue = self._queue
        if direct is not None and all(isinstance(frame, (str, bytes)) for frame in queue):
            # Nothing to await first (no accept, no close): hand what is queued over at once.
            frames = [frame for frame in queue if isinstance(frame, (str, bytes))]
            self._queue = _EMPTY
            self._size = 0
            self.direct = direct
            if not all(direct.send_frame(frame, self.limit) for frame in frames):
                self._on_write_error()
            return
        self._drain(direct)

    async def flush(self) -> None:
        """Wait until everything queued is written (or the transport failed).

        With a direct send, "written" is "in the transport's buffer": this waits while it is paused.
        """
        while self._writer is not None:
            await asyncio.shield(self._writer)
        direct = self.direct
        if direct is not None:
            await direct.wait_writable()

    def _queued(self) -> deque[Item]:
        """The queue, to add to (its own, no longer the shared empty one)."""
        if self._queue is _EMPTY:
            self._queue = deque()
        return self._queue

    def _drain(self, direct: DirectSend | None = None) -> None:
        if self._writer is None and self._send is not None and self._queue:
            self._writer = asyncio.get_running_loop().create_task(self._write(self._send, direct))

    async def _write(self, send: Send, direct: DirectSend | None = None) -> None:
        queue = self._queue
        closed = False
        try:
            while queue:
                frame = queue.popleft()
                if isinstance(frame, str):
                    self._size -= len(frame)
                    await send({"type": "websocket.send", "text": frame})
                elif isinstance(frame, bytes):
                    self._size -= len(frame)
                    await send({"type": "websocket.send", "bytes": frame})
                elif isinstance(frame, _Close):
                    queue.clear()
                    self._size = 0
                    closed = True
                    await send({"type": "websocket.close", "code": frame.code, "reason": frame.reason})
                else:
                    await send({"type": "websocket.accept"})
            if direct is not None and not closed:
                self.direct = direct  # all queued is written: from now on, straight to the transport
        except Exception as error:  # the peer is gone (the server raises on send after disconnect)
            logger.debug("write failed: %r", error)
            queue.clear()
            self._size = 0
            self._on_write_error()
        finally:
            self._writer = None
            if not queue and self._queue is queue:
                self._queue = _EMPTY
