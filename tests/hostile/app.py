"""What the hostile tests attack: the README's chat room and the seed's echo endpoint, as they stand.

Served with `tidings run tests/hostile/app.py:app` (its default path, ``--ws fast``), or ``:wildcard``
for a server that accepts any namespace, or ``:impatient`` for one that waits only a second for a
binary packet's attachments. ``room-private`` refuses subscribers: an outsider must not be
able to post into it either.
"""

from __future__ import annotations

import tidings
from tidings.events import on_connect, on_message, on_subscribe, on_unsubscribe


@on_connect
def connect(request, socket, context):
    context["name"] = request.query.get("name", "anonymous")


@on_subscribe(channel="^room-private")
def members_only(request, socket, context, channel):
    raise tidings.Refuse("members only")


@on_subscribe(channel="^room-")
def joined(request, socket, context, channel):
    socket.broadcast_channel({"action": "join", "name": context["name"]}, channel)


@on_message(channel="^room-")
def said(request, socket, context, text, channel):
    socket.send_and_broadcast_channel({"action": "message", "name": context["name"], "text": text}, channel)


@on_unsubscribe(channel="^room-")
def left(request, socket, context, channel):
    socket.broadcast_channel({"action": "leave", "name": context["name"]}, channel)


@tidings.websocket("/ws")
def echo(ws):
    while (message := ws.receive()) is not None:
        ws.send("Message received: " + message)


def page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app's own page"]


app = tidings.Server(wsgi_app=page)
wildcard = tidings.Server(wsgi_app=page, namespaces="*")
impatient = tidings.Server(wsgi_app=page, attachment_timeout=1.0)
