"""web.py beside tidings: ``web.ctx`` for Socket.IO handlers, and WebSockets in handler classes.

``tidings run main_app.py:application`` serves ``application = app.wsgifunc()`` beside the Socket.IO
endpoint on one port, as the webpy-socketio seed's ``SocketIOServer`` did. Its other line,
``urls += socketio_urls``, may stay (see :data:`socketio_urls`).

A Socket.IO handler reads what ``web.ctx`` would hold for the request that opened its connection::

    from tidings.integrations import webpy

    @tidings.on("connect")
    def connect(request, socket, context):
        context["ip"] = webpy.ctx(request).ip

A handler class holds a plain WebSocket, the seed's blocking loop::

    class Echo:
        def GET(self):
            ws = webpy.websocket()               # web.py's 400 for a plain HTTP request
            while (message := ws.receive()) is not None:
                ws.send("Message received: " + message)
            return ""
"""

from __future__ import annotations

from typing import Any, NoReturn

import web  # type: ignore[import-untyped]

from tidings.api.request import Request
from tidings.server.plain_websocket import WebSocket

__all__ = ["SocketIOPath", "ctx", "socketio_urls", "websocket"]

# Only its load() is used: web.py's own code that fills web.ctx from an environ, for every page.
_loader = web.application((), {}, autoreload=False)


def ctx(request: Request) -> Any:
    """A ``web.storage`` with what ``web.ctx`` holds for ``request`` in a web.py view.

    ``ip``, ``host``, ``path``, ``query``, ``fullpath``, ``method``, ``protocol``, ``home``,
    ``homedomain`` and ``env`` (the WSGI environ); parsed query and cookies are ``request.query`` and
    ``request.cookies``. The calling thread's own ``web.ctx`` is left as it was, so this is safe in
    ``async def`` handlers and inside web.py views too.
    """
    environ = dict(request.environ)
    saved = web.ctx.copy()  # web.ctx is per thread: a web.py view may be running in this one
    try:
        _loader.load(environ)
        return web.storage(web.ctx.copy())
    finally:
        web.ctx.clear()
        web.ctx.update(saved)


def websocket() -> WebSocket:
    """The WebSocket of the web.py request being handled (``web.ctx.env["wsgi.websocket"]``).

    For a plain HTTP request it raises web.py's ``400 Bad Request`` "Invalid WebSocket request", as
    the seed's ``raise HTTP(400, ...)``.
    """
    ws: WebSocket | None = web.ctx.env.get("wsgi.websocket")
    if ws is None:
        raise web.badrequest("Invalid WebSocket request")
    return ws


class SocketIOPath:
    """What web.py answers under ``/socket.io/`` when it runs alone.

    Under ``tidings run`` web.py never sees these requests: the server answers them first.
    """

    def GET(self, *args: str) -> NoReturn:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        raise web.HTTPError("503 Service Unavailable", headers, "Socket.IO is served by `tidings run`.\n")

    POST = GET


#: The seed's ``urls += socketio_urls``. Not needed with tidings; kept so that ported code runs
#: unchanged, and so that a web.py app started without tidings answers Socket.IO clients with a 503
#: that says why, not a 404.
socketio_urls: tuple[str, ...] = ("/socket.io/.*", "tidings.integrations.webpy.SocketIOPath")
