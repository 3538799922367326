"""The server of the Redis broker tests, run several times over with `--broker URL`.

Events let a test client make its server publish in each way there is; a WSGI view does it out of band,
and a plain WebSocket endpoint joins channels beside the Socket.IO clients. Channels ``hist-*`` keep a
history (50 messages), ``pres-*`` have presence, with a short presence timeout for the fault tests
(and their notices gathered for 0.5 s, a client's presence list stopping at 3).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

import tidings

handlers = tidings.Handlers()


def outcome(call, *args):
    """What tidings.<call>(*args) returned, or why it raised NoSocket."""
    try:
        return {"reached": getattr(tidings, call)(*args)}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}


@handlers.on("burst")
def burst(request, socket, context, channel, count):
    """``count`` numbered messages to the others in ``channel``, from a handler thread."""
    for number in range(count):
        socket.broadcast_channel(number, channel)


@handlers.on("tell")
def tell(request, socket, context, method, *args):
    """One of the socket's sending methods: ``broadcast_channel``, ``send_and_broadcast`` ..."""
    getattr(socket, method)(*args)


@handlers.on("emit_to")
def emit_to(request, socket, context, event, args, to, but_me=False):
    """``socket.emit(event, *args, to=to)``; ``but_me``: to all of them but this socket."""
    socket.emit(event, *args, to=to, exclude=socket if but_me else None)


@handlers.on("publish")
def publish(request, socket, context, channel, message):
    return outcome("broadcast_channel", message, channel)


@handlers.on("apublish")
async def apublish(request, socket, context, channel, message):
    try:
        return {"reached": await tidings.abroadcast_channel(message, channel)}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}


@handlers.on("publish_on_loop")
async def publish_on_loop(request, socket, context, channel, message):
    """The sync send on the event loop itself: a remote broker's count cannot be waited for there."""
    return outcome("broadcast_channel", message, channel)


@handlers.on("send_to")
def send_to(request, socket, context, session_id, message):
    return outcome("send", session_id, message)


@handlers.on("broadcast")
def broadcast(request, socket, context, message):
    return outcome("broadcast", message)


@handlers.on("iam")
def iam(request, socket, context, info):
    """What the others see of this socket in presence."""
    socket.presence_info = info


@handlers.on("whois")
async def whois(request, socket, context, channel):
    return await tidings.apresence(channel)


@handlers.on("block")
async def block(request, socket, context, seconds):
    """Hold the node's event loop for ``seconds``: a node too slow to beat or read."""
    time.sleep(seconds)


@handlers.websocket("/ws")
def plain(ws):
    """A plain WebSocket in the channel of its query; it echoes what it gets into that channel."""
    ws.subscribe(ws.request.query["channel"])
    ws.send("subscribed")
    while ws.receive() is not None:
        pass


def view(environ, start_response):
    """GET /publish?channel=c&message=m: tidings.broadcast_channel from a WSGI view."""
    query = dict(parse_qsl(environ["QUERY_STRING"]))
    body = json.dumps(outcome("broadcast_channel", query["message"], query["channel"])).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


app = tidings.Server(
    wsgi_app=view,
    handlers=handlers,
    history=[("^hist-", 50, 60)],
    presence=["^pres-"],
    presence_timeout=1.5,
    # Long enough for the sockets a test moves at once to be told of in one notice.
    presence_batch_interval=0.5,
    presence_max_list=3,
)
