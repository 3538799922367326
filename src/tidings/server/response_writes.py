"""One `send` per HTTP response where uvicorn would make two.

uvicorn's httptools request cycle writes a response's status line and headers as soon as the app
sends ``http.response.start``, and its body on ``http.response.body``: two ``transport.write`` calls,
each a ``send`` system call and a TCP segment of its own, which the client reads (and parses) twice.
A long-polling server answers thousands of small responses a second (every poll a response), so
:class:`JoinedWrites` stands between a request cycle and its connection: the writes of one turn of
the event loop go out together, in one call, at the latest when the loop comes round again.
"""

from __future__ import annotations

import asyncio
from typing import Any


class JoinedWrites:
    """The connection's transport as one request cycle sees it: writes wait for the end of the loop's
    turn, or for anything else done to the transport, and then go out in one call, in order."""

    __slots__ = ("_loop", "_transport", "_waiting")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._waiting:
            self._loop.call_soon(self.flush)
        self._waiting.append(data)

    def flush(self) -> None:
        """Write what waits (the connection's own writes call this first, to keep the order)."""
        waiting = self._waiting
        if waiting:
            self._waiting = []
            if not self._transport.is_closing():  # the connection was lost meanwhile: nobody to write to
                self._transport.write(waiting[0] if len(waiting) == 1 else b"".join(waiting))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport, after what waits
        self.flush()
        return getattr(self._transport, name)
