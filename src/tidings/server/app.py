"""The ASGI application: the Engine.IO endpoint under ``settings.path``, the user's app elsewhere."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from a2wsgi import WSGIMiddleware

from tidings.api.handlers import Handlers, default_handlers
from tidings.api.request import route_path
from tidings.brokers import Broker, BrokerError, broker_from
from tidings.channels import Targets
from tidings.server.admin import Admin, AdminUI
from tidings.server.admin_page import AdminPage
from tidings.server.endpoints import Endpoints
from tidings.server.engineio import Engine
from tidings.server.http_api import HttpApi
from tidings.server.responses import Receive, Scope, Send, respond
from tidings.server.socketio import SocketIO
from tidings.settings import Settings

if TYPE_CHECKING:
    from tidings.server.metrics import Metrics

_CACHE = b"public, max-age=3600"
_DRAIN_POLL = 0.05  # seconds between two looks at what a stopping server still runs
_JAVASCRIPT = b"text/javascript; charset=utf-8"
logger = logging.getLogger("tidings")


@functools.cache
def client_file(name: str) -> bytes:
    """A file of the browser client in ``tidings/static/``: ``tidings.js``, or its ES module face
    ``tidings.mjs``; read once."""
    return resources.files("tidings").joinpath("static", name).read_bytes()


def client_files(client_path: str) -> dict[str, bytes]:
    """What is served where: the client at ``client_path``, the ES module beside it (``.mjs`` for
    ``.js``), importing the client by the name it is served under."""
    stem, name = client_path.removesuffix(".js"), client_path.rpartition("/")[2]
    module = client_file("tidings.mjs").replace(b'"./tidings.js"', f'"./{name}"'.encode())
    return {client_path: client_file("tidings.js"), stem + ".mjs": module}


ASGIApp = Any  # an ASGI 3 callable: (scope, receive, send) -> Awaitable[None]
WSGIApp = Any  # a PEP 3333 callable: (environ, start_response) -> Iterable[bytes]


class Server:
    """A Socket.IO server, itself an ASGI app, that can host the user's WSGI or ASGI app beside it.

    ``Server(wsgi_app=flask_app)`` serves the Engine.IO endpoint (``/socket.io/``) and hands every
    other request to the Flask app; any ASGI server (uvicorn, hypercorn, granian) can run it, and
    ``tidings run`` runs it on uvicorn.

    Args:
        wsgi_app: a WSGI app to serve beside the endpoint (run in a2wsgi's thread pool).
        asgi_app: an ASGI app to serve beside the endpoint; its lifespan events are passed on.
        handlers: the handler registry; by default the one ``tidings.on`` writes to.
        namespaces: namespaces clients may connect to. ``None`` (default): ``/`` and every
            namespace with a handler; ``"*"``: any; else the given ones and ``/``.
        settings: a :class:`Settings`; or give its fields as keyword arguments.
        broker: how several server processes share channels: ``"memory"`` (one process) or
            ``"redis://host:6379/0"``, or a :class:`~tidings.brokers.Broker`. Defaults to the
            environment variable ``TIDINGS_BROKER``, else ``"memory"``. It starts at ASGI lifespan
            startup (under a server without lifespan: at the first request); an unreachable Redis
            fails the startup with a message naming the URL.
        admin_ui: an :class:`~tidings.server.admin.AdminUI`: the Socket.IO Admin UI's namespace
            (``/admin``), and its page if ``ui_files`` is given (see docs/operations.md).
    """

    def __init__(
        self,
        wsgi_app: WSGIApp | None = None,
        asgi_app: ASGIApp | None = None,
        *,
        handlers: Handlers | None = None,
        namespaces: Iterable[str] | str | None = None,
        settings: Settings | None = None,
        broker: str | Broker | None = None,
        admin_ui: AdminUI | None = None,
        **options: Any,
    ) -> None:
        if wsgi_app is not None and asgi_app is not None:
            raise ValueError("give wsgi_app or asgi_app, not both")
        if settings is not None and options:
            raise ValueError("give settings or keyword options, not both")
        self.settings = settings or Settings(**options)
        self.handlers = handlers if handlers is not None else default_handlers
        self.socketio = SocketIO(self.settings, self.handlers, namespaces, broker_from(broker))
        self.engine = Engine(self.settings, self.socketio)
        self.endpoints = Endpoints(self.settings, self.socketio.hub)
        #: The HTTP server API (docs/operations.md), served when the settings give it a key.
        self.api = HttpApi(self.settings, self.socketio.hub) if self.settings.api_key is not None else None
        self.wsgi_app = wsgi_app
        self.asgi_app: ASGIApp | None = asgi_app
        if wsgi_app is not None:
            self.asgi_app = WSGIMiddleware(wsgi_app)
        self._endpoint = self.settings.path.rstrip("/")
        self._client = client_files(self.settings.client_path)
        self._admin_page: AdminPage | None = None
        if admin_ui is not None:
            admin = Admin(admin_ui, self.socketio, self.engine)
            self.socketio.admin = self.socketio.hub.observer = admin
            if admin_ui.ui_files is not None:
                self._admin_page = AdminPage(admin_ui.ui_files, admin_ui.ui_path)
        self.metrics: Metrics | None = None
        if self.settings.metrics_path is not None:
            from tidings.server.metrics import Metrics  # prometheus-client, only for a server with metrics

            self.metrics = Metrics(self)

    def on(self, event: str, namespace: str = "/") -> Any:
        """Register a handler on this server's registry (see :meth:`Handlers.on`)."""
        return self.handlers.on(event, namespace)

    def websocket(self, path: str) -> Any:
        """Register a plain WebSocket endpoint on this server's registry (see :meth:`Handlers.websocket`)."""
        return self.handlers.websocket(path)

    def emit(
        self,
        event: str,
        *args: Any,
        to: Targets | None = None,
        namespace: str = "/",
        exclude: Targets | None = None,
    ) -> None:
        """Send ``event`` to every socket connected to ``namespace``, or to the channels, session ids
        and sockets ``to`` names (each socket once), but those ``exclude`` names (see
        :func:`tidings.emit`). Safe from any thread; it does not wait to count who took it."""
        self.socketio.emit(event, args, to, namespace, exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if not self.socketio.hub.started and not await self._start_for(kind, send):
            return
        path = route_path(scope)  # mounted (Starlette Mount, FastAPI mount): below the root_path
        endpoint = self.handlers.endpoints.get(path)
        if self.metrics is not None and path == self.settings.metrics_path and kind == "http":
            await self.metrics.serve(scope, receive, send)
        elif self.api is not None and kind == "http" and self.api.serves(path):
            await self.api.handle(scope, receive, send)
        elif endpoint is not None:
            if kind == "websocket":
                await self.endpoints.serve(endpoint, scope, receive, send)
            elif kind == "http":
                await self.endpoints.reject_http(send)
        elif path in self._client and kind == "http":
            await respond(send, 200, self._client[path], _JAVASCRIPT, cache_control=_CACHE)
        elif path.startswith(self.settings.path) or path == self._endpoint:
            self.socketio.hub.bind_loop()
            if kind == "http":
                await self.engine.handle_http(scope, receive, send)
            elif kind == "websocket":
                await self.engine.handle_websocket(scope, receive, send)
        elif self._admin_page is not None and kind == "http" and self._admin_page.serves(path):
            await self._admin_page.serve(path, send)
        elif kind == "websocket" and self.wsgi_app is not None:
            await self.endpoints.serve_wsgi(self.wsgi_app, scope, receive, send)
        elif self.asgi_app is not None:
            await self.asgi_app(scope, receive, send)
        elif kind == "http":
            await respond(send, 404, b"Not Found")
        else:
            await send({"type": "websocket.close", "code": 1000})

    def shutdown(self) -> None:
        """Close every session and WebSocket (clients see a transport close and reconnect elsewhere)."""
        self.engine.shutdown()
        self.endpoints.shutdown()
        self.socketio.shutdown()

    async def drain(self) -> None:
        """Shut down gracefully: close every session and WebSocket as :meth:`shutdown` does, then
        wait up to ``shutdown_timeout`` for the handlers still running (the closed sockets'
        ``disconnect`` and ``finish`` among them) and the WebSocket endpoints still open; handlers
        still running then are abandoned with a warning. ``tidings run`` calls it once it has
        stopped accepting connections, before uvicorn waits for the requests still open."""
        self.engine.shutdown()
        self.endpoints.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        while (self.socketio.running or self.endpoints.open) and loop.time() < deadline:
            await asyncio.sleep(_DRAIN_POLL)
        self.socketio.abandon()
        self.socketio.shutdown()

    async def _start_for(self, kind: str, send: Send) -> bool:
        """Start the broker at the first request (servers without lifespan); False: refused."""
        try:
            await self.socketio.hub.start()
        except BrokerError as error:
            logger.error("%s", error)
            if kind == "http":
                await respond(send, 503, b"Service Unavailable: the broker cannot be reached\n")
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1011})
            return False
        return True

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def observed_receive() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.socketio.hub.bind_loop()
                if self.metrics is not None:
                    await self.metrics.start()
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await self.socketio.hub.stop()
                if self.metrics is not None:
                    await self.metrics.stop()
            return message

        async def observed_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":  # the broker starts before serving
                try:
                    await self.socketio.hub.start()
                except BrokerError as error:
                    message = {"type": "lifespan.startup.failed", "message": str(error)}
            await send(message)

        if self.asgi_app is not None and self.wsgi_app is None:
            await self.asgi_app(scope, observed_receive, observed_send)
            return
        while True:
            message = await observed_receive()
            await observed_send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
