"""The connection limits of ``tidings run``: what a client that sends no request, or never reads,
may hold.

uvicorn makes one HTTP protocol object per accepted TCP connection; ``tidings run`` gives it
:class:`GuardedHttpToolsProtocol`, uvicorn's httptools protocol with :class:`~tidings.Settings`'
limits:

- ``max_connections``: a connection accepted while the process holds that many is closed at once;
- ``max_connections_per_address``: the same per peer address, except for the proxies uvicorn trusts
  (``forwarded_allow_ips``). A WebSocket connection stays counted after its upgrade, until it closes;
- ``header_timeout``: a request head not complete that long after the connection was made (or the
  next request's first byte came) closes the connection; ``max_request_head`` bounds its size;
- ``close_timeout``: a closing connection whose peer takes none of what is left to send for that
  long is aborted (:class:`Linger`; the WebSocket protocol uses it too).

A limit that is hit is logged (logger ``tidings``), at most once every ``LOG_INTERVAL`` seconds per
kind, with how many times it was hit meanwhile (:class:`~tidings.server.limits.Throttled`): an
attack does not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
import weakref
from typing import Any

from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tidings.protocol.websocket import http_response
from tidings.server.limits import Throttled, uncount
from tidings.server.response_writes import JoinedWrites
from tidings.settings import Settings

logger = logging.getLogger("tidings")
DEFAULT_SETTINGS = Settings()

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class Linger:
    """Ends a closing connection ``timeout`` seconds on, however its peer behaves.

    ``transport.close()`` waits until the peer has taken every byte left to send: one that never
    reads would hold the connection, and those bytes, forever. So once the peer has taken none of
    them for ``timeout``, the connection is reset, which also drops what the kernel still holds for
    it (a plain ``abort()`` would leave that queued before a FIN). A peer that still takes some,
    however slowly, gets another ``timeout``. One that has everything but has not closed (a
    WebSocket client that does not answer our close frame) is closed as usual. Cancel it in
    ``connection_lost``.
    """

    __slots__ = ("handle", "left", "loop", "timeout", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, timeout: float) -> None:
        self.loop = loop
        self.transport = transport
        self.timeout = timeout
        self.left = transport.get_write_buffer_size()
        self.handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        left = self.transport.get_write_buffer_size()
        if not left:
            self.transport.close()
        elif left < self.left:
            self.left = left
            self.handle = self.loop.call_later(self.timeout, self._check)
        else:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()

    def cancel(self) -> None:
        self.handle.cancel()


class Slot:
    """One connection counted against its address's limit, until :meth:`release`."""

    __slots__ = ("address", "counts")

    def __init__(self, counts: dict[str, int], address: str | None) -> None:
        self.counts = counts
        self.address = address

    def release(self) -> None:
        address = self.address
        if address is None:
            return
        self.address = None
        uncount(self.counts, address)


_UNCOUNTED = Slot({}, None)  # the slot of a connection from a trusted proxy


class ConnectionGuard:
    """The connections of one uvicorn server (one process), counted by peer address."""

    def __init__(self, settings: Settings, trusted: list[str] | str) -> None:
        self.settings = settings
        self.trusted = _TrustedHosts(trusted)
        self.counts: dict[str, int] = {}
        self.process_full = Throttled(
            "connection from %s refused: %d connections open, the most this process takes (max_connections)"
        )
        self.address_full = Throttled(
            "connection from %s refused: %d connections open from that address (max_connections_per_address)"
        )
        self.head_timeouts = Throttled(
            "connection from %s closed: no complete request head within %g s (header_timeout)", logging.INFO
        )

    def admit(self, open_connections: int, address: str | None) -> Slot | None:
        """The new connection's slot, or None if it is refused: the process holds ``open_connections``
        (this one included)."""
        settings = self.settings
        if open_connections > settings.max_connections:
            self.process_full(address, open_connections - 1)
            return None
        if address is None or address in self.trusted:
            return _UNCOUNTED
        count = self.counts.get(address, 0)
        if count >= settings.max_connections_per_address:
            self.address_full(address, count)
            return None
        self.counts[address] = count + 1
        return Slot(self.counts, address)


_guards: weakref.WeakKeyDictionary[Any, ConnectionGuard] = weakref.WeakKeyDictionary()


def guard_of(server_state: Any, settings: Settings, trusted: list[str] | str) -> ConnectionGuard:
    """The guard of the uvicorn server whose ``server_state`` this is (made on its first connection)."""
    guard = _guards.get(server_state)
    if guard is None:
        guard = _guards[server_state] = ConnectionGuard(settings, trusted)
    return guard


class ThrottledWarnings(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's connection logger with its warnings throttled (:class:`Throttled`, one per message):
    "Invalid HTTP request received." is a line per bad request, and a client can send any number.
    Everything else passes through."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger)
        self.warnings: dict[str, Throttled] = {}  # uvicorn's few fixed messages

    @property
    def level(self) -> int:  # uvicorn reads it to decide on its trace lines
        level: int = self.logger.level
        return level

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        if args or kwargs:
            super().warning(msg, *args, **kwargs)  # type: ignore[arg-type]
            return
        message = str(msg)
        throttled = self.warnings.get(message)
        if throttled is None:
            throttled = self.warnings[message] = Throttled(message.replace("%", "%%"), logger=self.logger)
        throttled()


_uvicorn_logger = ThrottledWarnings(logging.getLogger("uvicorn.error"))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection limits of ``settings`` (see the module)."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        settings: Settings = DEFAULT_SETTINGS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.settings = settings
        self.guard = guard_of(server_state, settings, config.forwarded_allow_ips)
        self.slot: Slot | None = None
        # The head being waited for: its number (counted from 1; None while no head is due), its
        # deadline, and the one timer that watches the deadlines (see _expect_head).
        self.head: int | None = None
        self.heads = 0
        self.head_deadline = 0.0
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_size = 0
        self.linger: Linger | None = None
        self.logger = _uvicorn_logger  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.slot = self.guard.admit(len(self.connections), self.client[0] if self.client else None)
        if self.slot is None:
            transport.close()  # nothing was written: it goes at once
            return
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._stop_head_timer()
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    # -- the request head ---------------------------------------------------------------------------

    def _expect_head(self) -> None:
        # A kept-alive connection (a long-poll's) begins requests by the thousand: a timer each, made
        # and cancelled, cost more than the rest of the guard. The one timer stays when a head comes
        # in time; when it fires before the deadline of the head due then, it is set again for the rest.
        if self.head is None:
            self.heads += 1
            self.head = self.heads
            self.head_size = 0
            self.head_deadline = self.loop.time() + self.settings.header_timeout
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(self.settings.header_timeout, self._head_due)

    def _head_received(self) -> None:
        self.head = None

    def _stop_head_timer(self) -> None:
        """The connection is lost, or another protocol takes it: no head is due here any more."""
        self.head = None
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_due(self) -> None:
        self.head_timer = None
        if self.head is None:
            return
        left = self.head_deadline - self.loop.time()
        if left > 0:
            self.head_timer = self.loop.call_later(left, self._head_due)
            return
        self._head_timed_out()

    def _head_timed_out(self) -> None:
        self.head = None
        self.guard.head_timeouts(self.client[0] if self.client else None, self.settings.header_timeout)
        self.transport.close()
        self._linger()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect_head()  # the next request on a kept-alive connection; the first one's runs already

    def on_headers_complete(self) -> None:
        self._head_received()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a request for the app (not an upgrade): its response in one write
            self.cycle.transport = JoinedWrites(self.transport, self.loop)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.cycle is not None:  # what the app wrote goes before anything said about this data
            self.cycle.transport.flush()  # type: ignore[attr-defined]
        head = self.head  # a request head begun before this data
        super().data_received(data)
        if head is not None and head == self.head:  # and not complete after it
            # Every byte of it so far: the parser and uvicorn keep them all until the head ends. (The
            # data that begins a head is not counted: it may hold the end of the request before.)
            self.head_size += len(data)
            if self.head_size > self.settings.max_request_head:
                self._refuse_head()

    def _refuse_head(self) -> None:
        self._stop_head_timer()
        body = b"Request Header Fields Too Large"
        headers = [*self.server_state.default_headers, (b"content-type", b"text/plain; charset=utf-8")]
        self.transport.write(http_response(431, body.decode(), headers, body))
        self.transport.close()
        self._linger()

    def send_400_response(self, msg: str) -> None:
        super().send_400_response(msg)
        self._linger()

    # -- the upgrade: the WebSocket protocol takes the connection, and its slot -----------------------

    def handle_websocket_upgrade(self) -> None:
        self._stop_head_timer()
        super().handle_websocket_upgrade()
        slot, self.slot = self.slot, None
        if slot is not None:
            hand_over(self.transport.get_protocol(), slot)

    # -- closing: not waiting forever on a peer that does not read ----------------------------------

    def _linger(self) -> None:
        transport = self.transport
        if self.linger is None and transport.is_closing() and transport.get_write_buffer_size():
            self.linger = Linger(self.loop, transport, self.settings.close_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._linger()  # the response said "connection: close"

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._linger()


def hand_over(protocol: Any, slot: Slot) -> None:
    """Have ``protocol`` (the WebSocket protocol that took the connection) release ``slot`` when its
    connection is lost: tidings' own through its ``connection_slot``, another by a wrapped
    ``connection_lost``."""
    if hasattr(protocol, "connection_slot"):
        protocol.connection_slot = slot
        return
    lost = protocol.connection_lost

    def connection_lost(exc: Exception | None) -> None:
        slot.release()
        lost(exc)

    protocol.connection_lost = connection_lost


def raise_open_files_limit() -> int | None:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now in force
    (None where there is no such limit)."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # not allowed here: keep the soft limit
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def connection_capacity(max_connections: int, open_files: int | None) -> int:
    """``max_connections``, lowered so that the connections leave file descriptors for the rest: a
    tenth of ``open_files``, at least 64 (Redis, log and app files, the listening socket, and a
    connection accepted beyond the limit until it is closed)."""
    if open_files is None:
        return max_connections
    reserve = max(64, open_files // 10)
    return max(1, min(max_connections, open_files - reserve))
