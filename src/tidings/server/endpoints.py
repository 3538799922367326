"""Plain WebSocket endpoints: runs the handlers registered with ``@tidings.websocket(path)``, and WSGI
apps asked for an upgrade, each over its :class:`~tidings.server.plain_websocket.AsyncWebSocket`."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from tidings.api.handlers import Handler
from tidings.api.request import Headers, Request, route_path
from tidings.hub import Hub
from tidings.protocol.websocket import GOING_AWAY, INTERNAL_ERROR
from tidings.server.plain_websocket import AsyncWebSocket, State, WebSocket
from tidings.server.responses import TEXT, OriginCheck, Receive, Scope, Send, reject_websocket, respond
from tidings.settings import Settings

logger = logging.getLogger("tidings.websocket")


class Endpoints:
    """Runs the WebSocket endpoint handlers of a server, and WSGI apps asked for an upgrade."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.origins = OriginCheck(settings.cors_allowed_origins, settings.cors_credentials)
        self.open: set[AsyncWebSocket] = set()
        self._threads = 0  # blocking handlers running now, each in a thread of its own

    async def serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``handler(ws)`` for a WebSocket request to its path."""
        connection = await self._open(scope, receive, send, blocking=not handler.is_async)
        if connection is None:
            return
        try:
            if handler.is_async:
                await handler.func(connection)
            else:
                await self._in_thread(handler.func, WebSocket(connection, _loop()))
        except Exception:
            logger.exception("WebSocket endpoint %s raised", scope["path"])
            if connection.state is State.CONNECTING:
                await reject_websocket(scope, send, 500, b"Internal Server Error", TEXT)
                connection.state = State.CLOSED
            else:
                connection.close_soon(INTERNAL_ERROR, "internal error")
        finally:
            await self._end(connection, scope, send, 403, b"")

    async def serve_wsgi(self, wsgi_app: Any, scope: Scope, receive: Receive, send: Send) -> None:
        """Call a WSGI app for a WebSocket request, with the connection as ``environ["wsgi.websocket"]``.

        A framework's view can then hold the seed's loop (``request.websocket`` in web2py,
        ``request.environ["wsgi.websocket"]`` in Flask, ``web.ctx.env`` in web.py). If the app
        answers without touching the WebSocket, the upgrade is refused with the app's status.
        """
        connection = await self._open(scope, receive, send, blocking=True)
        if connection is None:
            return
        answer: dict[str, Any] = {}

        def call_app(ws: WebSocket) -> None:
            environ = wsgi_environ(connection.request, ws)

            def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
                answer["status"] = int(status.split(" ", 1)[0])
                return lambda data: None

            result = wsgi_app(environ, start_response)
            try:  # iterated even when unused: some frameworks clean up as the body is consumed
                answer["body"] = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        try:
            await self._in_thread(call_app, WebSocket(connection, _loop()))
        except Exception:
            logger.exception("WSGI app raised on a WebSocket request to %s", scope["path"])
            answer = {"status": 500, "body": b"Internal Server Error"}
            if connection.state is State.OPEN:
                connection.close_soon(INTERNAL_ERROR, "internal error")
        finally:
            status = answer.get("status", 500)
            if status < 400:  # the app answered as to a page: this path holds no WebSocket view
                status, answer["body"] = 400, b"No WebSocket endpoint here.\n"
            await self._end(connection, scope, send, status, answer.get("body", b""))

    async def reject_http(self, send: Send) -> None:
        """The answer to a plain HTTP request for a WebSocket endpoint (as the seed's ``HTTP(400)``)."""
        await respond(send, 400, b"This is a WebSocket endpoint: connect with a WebSocket client.\n")

    def shutdown(self) -> None:
        for connection in list(self.open):
            connection.close_soon(GOING_AWAY, "server shutdown")

    async def _open(
        self, scope: Scope, receive: Receive, send: Send, blocking: bool
    ) -> AsyncWebSocket | None:
        """The connection for a WebSocket request, or None if it was refused (origin, capacity)."""
        if (await receive())["type"] != "websocket.connect":
            return None
        headers = Headers(scope.get("headers", []))
        if not self.origins.allows(scope, headers)[0]:
            await reject_websocket(scope, send, 403, b"Origin not allowed\n", TEXT)
            return None
        if blocking and self._threads >= self.settings.max_sync_websockets:
            logger.warning("refusing a WebSocket: max_sync_websockets (%d) reached", self._threads)
            await reject_websocket(scope, send, 503, b"Server busy: too many blocking WebSockets\n", TEXT)
            return None
        self.hub.bind_loop()
        connection = AsyncWebSocket(
            scope, receive, send, self.hub, self.settings, "websocket " + route_path(scope)
        )
        self.open.add(connection)
        return connection

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> None:
        """Run a blocking handler in a thread of its own (``_open`` checked there is room).

        A thread per connection, not a pool: it ends with its connection, so a burst of
        connections leaves no parked threads behind.
        """
        loop = _loop()
        done: asyncio.Future[None] = loop.create_future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                context.run(func, *args)
            except BaseException as error:
                loop.call_soon_threadsafe(_settle, done, error)
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        self._threads += 1
        try:
            threading.Thread(target=run, name="tidings-websocket", daemon=True).start()
            await done
        finally:
            self._threads -= 1

    async def _end(
        self, connection: AsyncWebSocket, scope: Scope, send: Send, status: int, body: bytes
    ) -> None:
        self.open.discard(connection)
        if connection.state is State.CONNECTING:  # the handler never accepted: refuse the upgrade
            connection.state = State.CLOSED
            await reject_websocket(scope, send, status, body, TEXT)
            return
        await connection._finish()


def wsgi_environ(request: Request, websocket: WebSocket) -> dict[str, Any]:
    """A PEP 3333 environ for a WebSocket request, with the connection as ``wsgi.websocket``."""
    environ = dict(request.environ)
    environ.update(
        {
            "wsgi.version": (1, 0),
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.websocket": websocket,
            "wsgi.websocket_version": "13",
        }
    )
    return environ


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled (server shutdown)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
