"""What the hostile tests attack: the README's chat room and the seed's echo endpoint, as they stand.

Served with `tidings run tests/hostile/app.py:app` (its default path, ``--ws fast``), or ``:wildcard``
for a server that accepts any namespace; the servers at the end are the same app with the settings a
test needs (small per-address limits, CORS choices, connection limits, short attachment and body timeouts).
``room-private`` refuses subscribers but ``?name=member``: an outsider must not be able to post into
it either.
"""

from __future__ import annotations

import time

import tidings
from tidings.events import on_connect, on_message, on_subscribe, on_unsubscribe


@on_connect
def connect(request, socket, context):
    context["name"] = request.query.get("name", "anonymous")


@on_subscribe(channel="^room-private")
def members_only(request, socket, context, channel):
    if context["name"] != "member":  # the test's stand-in for the app's own check
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


@tidings.on("save")
def save(request, socket, context, record):
    time.sleep(0.01)  # what a database write takes


@tidings.websocket("/ws")
def echo(ws):
    while (message := ws.receive()) is not None:
        ws.send("Message received: " + message)


def page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app's own page"]


app = tidings.Server(wsgi_app=page)
wildcard = tidings.Server(wsgi_app=page, namespaces="*")
# Per-address session limits small enough to reach: few open sessions, or few new ones (a token
# every 100 s, so that none comes back during a test).
few_sessions = tidings.Server(wsgi_app=page, max_sessions_per_address=5)
slow_sessions = tidings.Server(wsgi_app=page, session_burst_per_address=5, session_rate_per_address=0.01)
# CORS: any origin; any origin with credentials asked for; a list of origins.
anywhere = tidings.Server(wsgi_app=page, cors_allowed_origins="*")
anywhere_with_credentials = tidings.Server(wsgi_app=page, cors_allowed_origins="*", cors_credentials=True)
listed = tidings.Server(
    wsgi_app=page, cors_allowed_origins=["https://Chat.Example.org:443", "http://localhost:3000"]
)

# The same app with small connection limits, so that the transport tests reach them with a few
# dozen connections and short waits. 127.0.0.1 (the bystander) is a trusted proxy address, exempt
# from the per-address limit; the attackers come from 127.0.0.2 and up.
limited = tidings.Server(
    wsgi_app=page,
    close_timeout=1,
    header_timeout=3,
    max_connections=100,
    max_connections_per_address=40,
)
impatient = tidings.Server(wsgi_app=page, attachment_timeout=1.0, body_timeout=1.0)
