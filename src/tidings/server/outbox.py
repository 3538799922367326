"""The outbound queue of one connection, bounded in bytes, drained to an ASGI WebSocket.

An Engine.IO session and a plain WebSocket endpoint both write through one: frames are queued
without waiting (a broadcast appends the same object to every recipient's outbox), and a writer task
drains them in order. The task exists only while there is something to write, so an idle
connection costs no task. A long-polling session instead takes everything queued at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

logger = logging.getLogger("tidings.outbox")

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Close:
    """Queue marker: close the WebSocket once everything queued before it is written."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


_ACCEPT = object()  # queue marker: accept the WebSocket upgrade before the first frame


class Outbox:
    """Frames (``str`` for text, ``bytes`` for binary) waiting to go out on one connection.

    ``limit`` bounds the bytes queued: :meth:`put` refuses a frame that would pass it, and the owner
    then closes the connection, so a stalled consumer costs at most that much memory.
    ``on_write_error`` is called (on the loop) if the transport fails under the writer.
    """

    __slots__ = ("_on_write_error", "_queue", "_send", "_size", "_writer", "limit")

    def __init__(self, limit: int, on_write_error: Callable[[], None]) -> None:
        self.limit = limit
        self._on_write_error = on_write_error
        self._queue: deque[str | bytes | _Close | object] = deque()
        self._size = 0
        self._send: Send | None = None
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: str | bytes) -> bool:
        """Queue one frame; False (and nothing queued) if it would pass the limit."""
        size = self._size + len(frame)
        if size > self.limit:
            return False
        self._queue.append(frame)
        self._size = size
        self._drain()
        return True

    def put_many(self, frames: Iterable[str | bytes]) -> bool:
        """Queue frames that belong together (a binary packet and its attachments), or none."""
        frames = list(frames)
        size = self._size + sum(len(frame) for frame in frames)
        if size > self.limit:
            return False
        self._queue.extend(frames)
        self._size = size
        self._drain()
        return True

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket after what is queued (once one is attached)."""
        self._queue.append(_Close(code, reason))
        self._drain()

    def take(self) -> list[str | bytes]:
        """Everything queued, for a long-polling response; the outbox is empty after."""
        frames = [frame for frame in self._queue if isinstance(frame, (str, bytes))]
        self._queue.clear()
        self._size = 0
        return frames

    def attach(self, send: Send, accept: bool = False) -> None:
        """From now on, drain to this ASGI WebSocket ``send``; first accept the upgrade if asked."""
        if accept:
            self._queue.appendleft(_ACCEPT)
        self._send = send
        self._drain()

    async def flush(self) -> None:
        """Wait until everything queued is written (or the transport failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    def _drain(self) -> None:
        if self._writer is None and self._send is not None and self._queue:
            self._writer = asyncio.get_running_loop().create_task(self._write(self._send))

    async def _write(self, send: Send) -> None:
        queue = self._queue
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
                    await send({"type": "websocket.close", "code": frame.code, "reason": frame.reason})
                else:
                    await send({"type": "websocket.accept"})
        except Exception as error:  # the peer is gone (the server raises on send after disconnect)
            logger.debug("write failed: %r", error)
            queue.clear()
            self._size = 0
            self._on_write_error()
        finally:
            self._writer = None
