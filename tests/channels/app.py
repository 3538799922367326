"""The server the channel tests run with `tidings run tests/channels/app.py:app`, in the seeds' style.

Lifecycle events are reported to the "audit" channel, so a test can watch them from another client,
even those of a socket that is already gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
from urllib.parse import parse_qsl

import tidings
from tidings.events import (
    on_connect,
    on_disconnect,
    on_error,
    on_finish,
    on_message,
    on_subscribe,
    on_unsubscribe,
)

AUDIT = "audit"


def audit(socket, event, *details):
    """Report a lifecycle event to the observers in the audit channel, if there are any."""
    with contextlib.suppress(tidings.NoSocket):
        tidings.broadcast_channel([event, socket.session_id, *details], AUDIT)


@on_connect
def connect(request, socket, context):
    if socket.auth.get("refuse"):
        raise tidings.Refuse("go away")
    context["seen"] = []
    audit(socket, "connect")


@on_subscribe
def subscribe(request, socket, context, channel):
    if channel.startswith("private-"):
        raise tidings.Refuse("private channel")
    audit(socket, "subscribe", channel)


@on_subscribe(channel="^explode")
async def explode_on_subscribe(request, socket, context, channel):
    raise RuntimeError("subscribe handler failure on purpose")


@on_unsubscribe
async def unsubscribe(request, socket, context, channel):
    audit(socket, "unsubscribe", channel)


@on_message(channel="^read-only-")
def read_only(request, socket, context, message):
    """Members may read, not write: a message is refused, and the handlers after this one do not run."""
    raise tidings.Refuse("read-only channel")


@on_message
def every_message(request, socket, context, message, channel):
    context["seen"].append([message, channel])
    if message == "boom":
        raise RuntimeError("boom")


@on_message(channel="^room-")
def chat(request, socket, context, message, channel):
    socket.broadcast_channel(message, channel)
    return "room"


@on_message(channel="^dashboard", members_only=False)
async def dashboard(request, socket, context, message):
    """Takes messages from sockets that are not in the channel too."""
    return "dashboard"


@on_error
def error(request, socket, context, exception):
    audit(socket, "error", str(exception))


@on_error(channel="^room-")
def room_error(request, socket, context, exception):
    audit(socket, "room-error", str(exception))


@on_disconnect
def disconnect(request, socket, context):
    audit(socket, "disconnect", socket.disconnect_reason)


@on_disconnect(channel="^room-")
def left_a_room(request, socket, context):
    audit(socket, "disconnect-from-room")


@on_finish
async def finish(request, socket, context):
    audit(socket, "finish", *([socket.auth["tag"]] if "tag" in socket.auth else []))


@tidings.on("seen")
def seen(request, socket, context):
    return context["seen"]


@tidings.on("channels")
def channels(request, socket, context):
    return sorted(socket.channels)


@tidings.on("do")
def do(request, socket, context, method, *args):
    """Call one of the socket's sending or channel methods with ``args``."""
    result = getattr(socket, method)(*args)
    return sorted(socket.channels) if result is None else result


@tidings.on("refused")
def refused(request, socket, context):
    raise tidings.Refuse("not for you")


@tidings.on("fence")
def fence(request, socket, context, mark):
    """A marker to every socket: what a client got before it came is all an action sent it."""
    socket.send_and_broadcast({"fence": mark})


def publish(environ, start_response):
    """GET /publish?call=broadcast_channel&channel=c&message=m[&session_id=s][&thread=1]

    Calls tidings.<call> out of band, in this WSGI view's thread or in a thread of its own.
    """
    query = dict(parse_qsl(environ["QUERY_STRING"]))
    call = query.pop("call")
    thread = query.pop("thread", None)
    outcome = {}

    def run():
        try:
            outcome["reached"] = getattr(tidings, call)(**query)
        except tidings.NoSocket as error:
            outcome["no_socket"] = str(error)
        except ValueError as error:  # a channel name or session id that is none
            outcome["value_error"] = str(error)

    if thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    body = json.dumps(outcome).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


app = tidings.Server(wsgi_app=publish, ping_interval=0.5, ping_timeout=0.5)
