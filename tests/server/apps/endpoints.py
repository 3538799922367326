"""Plain WebSocket endpoints for `tidings run tests/server/apps/endpoints.py:app`."""

from __future__ import annotations

from urllib.parse import parse_qsl

import tidings

handlers = tidings.Handlers()


@handlers.websocket("/echo")
def echo(ws):
    """The seed's loop, in a thread of its own."""
    while (message := ws.receive()) is not None:
        ws.send(message if isinstance(message, bytes) else "Message received: " + message)


@handlers.websocket("/aecho")
async def aecho(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message if isinstance(message, bytes) else "async: " + message)


@handlers.websocket("/close")
def close(ws):
    """Closes with the code and reason it is sent, e.g. "4001 bye"."""
    code, _, reason = ws.receive().partition(" ")
    ws.close(int(code), reason)


@handlers.websocket("/fail")
def fail(ws):
    ws.receive()
    raise RuntimeError("endpoint failure on purpose")


@handlers.websocket("/room")
def room(ws):
    """Joins ?channel=...; what it receives goes to the whole channel, Socket.IO clients included."""
    channel = ws.request.query["channel"]
    ws.subscribe(channel)
    ws.send(ws.session_id)
    while (message := ws.receive()) is not None:
        tidings.broadcast_channel(message, channel)


@handlers.websocket("/timeout")
def timeout(ws):
    try:
        ws.receive(timeout=0.2)
    except TimeoutError:
        ws.send("timed out")


@handlers.on("shout")
def shout(request, socket, context, message, channel):
    socket.send_and_broadcast_channel(message, channel)


def page(environ, start_response):
    """A WSGI app with a WebSocket view in the style of the web2py seed."""
    websocket = environ.get("wsgi.websocket")
    if environ["PATH_INFO"] == "/wsgi-ws":
        if websocket is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"Invalid WebSocket request"]
        while (message := websocket.receive()) is not None:
            websocket.send("wsgi: " + message)
        return []
    if environ["PATH_INFO"] == "/send":  # tidings.send, out of band from this WSGI view's thread
        query = dict(parse_qsl(environ["QUERY_STRING"]))
        reached = tidings.send(query["session_id"], query["message"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(reached).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app's own page"]


app = tidings.Server(wsgi_app=page, handlers=handlers, max_payload=10_000)
