"""The ASGI face of tidings' WebSocket protocol: what the app sees of one connection.

:class:`AsgiWebSocket` builds the ``websocket`` scope from the upgrade request, runs the app with
``receive`` and ``send``, queues the client's messages for ``receive`` (or hands them to callbacks
once the app has called :meth:`~AsgiWebSocket.detach`), and turns the app's answer to the upgrade into
bytes: ``websocket.accept`` (``101``), ``websocket.close`` (403), or any HTTP answer through the
``websocket.http.response`` extension.

It is the protocol's state machine (:class:`~tidings.protocol.websocket.ServerConnection`) with the
app on top; moving the bytes (writing, closing the transport, its timers) is left to the subclass,
:class:`~tidings.server.websocket.FastWebSocketProtocol`, through the abstract methods at the end.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from tidings.protocol import websocket as ws
from tidings.protocol.websocket import ServerConnection, State
from tidings.server.outbox import FASTSEND
from tidings.settings import Settings

logger = logging.getLogger("uvicorn.error")

# The received-messages queue of a connection with none waiting: shared, never written to (an empty
# deque holds a 64-slot block, ~0.7 KiB per idle connection).
_NO_MESSAGES: deque[dict[str, Any]] = deque()
_HTTP_RESPONSE_EXTENSION: dict[str, Any] = {}
_NO_SUBPROTOCOLS: list[str] = []  # shared by every scope without any (ASGI apps only read it)
_local_addresses: dict[Any, Any] = {}  # the server's address, one tuple for all its connections
TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


class AsgiWebSocket(ServerConnection, abc.ABC):
    """One WebSocket connection as the ASGI app sees it: its scope, ``receive`` and ``send``."""

    __slots__ = (
        "_close_code",
        "_disconnected",
        "_http_response",
        "_messages",
        "_on_close",
        "_on_message",
        "_queue_full",
        "_waiter",
        "app",
        "app_state",
        "config",
        "default_headers",
        "loop",
        "scope",
        "settings",
        "tasks",
        "transport",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        settings: Settings,
    ) -> None:
        super().__init__(
            max_size=config.ws_max_size,
            max_head=settings.max_request_head,
            control_frames_per_minute=settings.websocket_control_frames_per_minute,
        )
        self.config = config
        self.settings = settings
        self.app = config.loaded_app
        self.loop = loop
        self.app_state = app_state
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: dict[str, Any] = {}
        self._messages = _NO_MESSAGES
        self._waiter: asyncio.Future[None] | None = None
        self._disconnected = False  # the app has been given websocket.disconnect
        self._close_code = ws.ABNORMAL_CLOSURE
        self._queue_full = False  # the app has websocket_max_queue messages unread
        self._http_response: list[Any] | None = None  # status, headers, body chunks
        # Set by detach(): the app takes messages by callback and its coroutine has returned.
        self._on_message: Callable[[str | bytes], None] | None = None
        self._on_close: Callable[[int, str], None] | None = None

    # -- the upgrade request -----------------------------------------------------------------------

    def _start_app(self, request: ws.Request) -> None:
        """Run the app on a valid upgrade request: it decides whether to accept."""
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
        self._deliver({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _refuse(self, error: ws.HandshakeError) -> None:
        """Answer an invalid upgrade request with an HTTP error and close (no app involved)."""
        headers = [TEXT_PLAIN]
        if error.status == 426:  # §4.4: say which version we speak
            headers.append((b"sec-websocket-version", b"13"))
        self._write_http(error.status, headers, error.reason.encode())

    def _write_http(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        if self.state is not State.CLOSED:
            self._write_now(ws.http_response(status, phrase, [*self.default_headers, *headers], body))
            self._close_transport()
        self._disconnect(ws.ABNORMAL_CLOSURE, "")

    # -- ASGI ---------------------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
            if self.state is State.CONNECTING:
                self._write_http(500, [TEXT_PLAIN], b"")
            elif self.state is State.OPEN:
                self._send_close(ws.INTERNAL_ERROR, "")
        else:
            if self.state is State.CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")
                self._write_http(500, [TEXT_PLAIN], b"")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self._on_message is not None and self.state is not State.CONNECTING:
            return  # detached: the connection lives on without the app's coroutine
        if self.state is State.OPEN:
            self._send_close(ws.NORMAL_CLOSURE, "")
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
                self._push_data(data)
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
                    headers.append(TEXT_PLAIN)
                self._log(str(status))
                self._write_http(status, headers, b"".join(body))
            return
        if kind == "websocket.accept":
            headers = [*self.default_headers, *message.get("headers", [])]
            subprotocol = message.get("subprotocol")
            if subprotocol:
                headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
            self._log("[accepted]")
            self._write_now(self.accept(headers))
        elif kind == "websocket.close":
            self._log("403")
            self._write_http(403, [TEXT_PLAIN], b"")
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

    # -- the client's messages, for receive() or the detached app's callbacks -------------------------

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
            self._callback_failed()

    def _callback_failed(self) -> None:
        """The message callback raised (a bug): log it and close the connection."""
        logger.exception("Exception in a WebSocket message callback")
        self._fail_connection(ws.INTERNAL_ERROR, "")

    def _call_close(self, code: int, reason: str) -> None:
        on_close = self._on_close
        self._on_close = None
        if on_close is not None:
            try:
                on_close(code, reason)
            except Exception:
                logger.exception("Exception in a WebSocket close callback")

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

    # -- moving the bytes: the transport side's ------------------------------------------------------

    _paused: bool  # the transport asked us to stop writing

    @abc.abstractmethod
    def _push_data(self, data: str | bytes) -> None:
        """Queue ``data`` as one frame, to be written this loop iteration."""

    @abc.abstractmethod
    async def wait_writable(self) -> None:
        """Return once the transport takes writes again."""

    @abc.abstractmethod
    def _write_now(self, data: bytes) -> None:
        """Write ``data`` after what is queued."""

    @abc.abstractmethod
    def _send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake."""

    @abc.abstractmethod
    def _fail_connection(self, code: int, reason: str) -> None:
        """Close with ``code`` at once and tell the app."""

    @abc.abstractmethod
    def _close_transport(self) -> None:
        """Close the TCP connection (once CLOSED, nothing)."""

    @abc.abstractmethod
    def _set_reading(self) -> None:
        """Pause or resume reading the peer, as the queue of unread messages says."""
