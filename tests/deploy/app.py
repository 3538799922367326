"""The app behind nginx in tests/deploy/test_nginx.py, run as two `tidings run` processes on one Redis.

Its heartbeat is short so that a test sees an idle WebSocket through nginx outlive several pings.
"""

from __future__ import annotations

import tidings

handlers = tidings.Handlers()


@handlers.on_message
def relay(request, socket, context, message, channel):
    """A message to a channel goes to the others in it, on every process."""
    socket.broadcast_channel(message, channel)


@handlers.on("whoami")
def whoami(request, socket, context):
    """What tidings saw of the client through the proxy, and the port of the process that holds it."""
    return {
        "port": request.environ["SERVER_PORT"],
        "client": request.client[0],
        "scheme": request.environ["wsgi.url_scheme"],
        "protocol": request.environ["SERVER_PROTOCOL"],  # what nginx spoke to the process
    }


@handlers.websocket("/ws")
def plain(ws):
    """A plain WebSocket in the channel of its query; it echoes what it gets."""
    ws.subscribe(ws.request.query["channel"])
    ws.send("subscribed")
    while (message := ws.receive()) is not None:
        ws.send("echo: " + message)


def page(environ, start_response):
    """The app's own page, through nginx too: what the WSGI app sees of the client."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()]


app = tidings.Server(wsgi_app=page, handlers=handlers, ping_interval=0.5, ping_timeout=5)
