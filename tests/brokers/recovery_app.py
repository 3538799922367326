"""The server of the connection state recovery tests: `tidings run tests/brokers/recovery_app.py:app`
(with `--broker` for the Redis tests), or ``Server(handlers=handlers, ...)`` in the test process.

A socket's ``disconnect`` handler tells the ``watch`` channel that it went (and why), so a test knows
the server has kept its state before it sends what the socket is to miss; the other events let a
client make its server send in each way there is, and say what the server knows of a socket.
"""

from __future__ import annotations

import contextlib
import time

import tidings

handlers = tidings.Handlers()


@handlers.on_connect
def connect(request, socket, context):
    context["connects"] = context.get("connects", 0) + 1
    context["recovered"] = socket.recovered


@handlers.on_disconnect
def disconnect(request, socket, context):
    gone = {"gone": socket.session_id, "reason": socket.disconnect_reason}
    with contextlib.suppress(tidings.NoSocket):  # nobody watches
        tidings.broadcast_channel(gone, "watch")


@handlers.on("whoami")
def whoami(request, socket, context):
    """What the server knows of this socket."""
    return {
        "sid": socket.session_id,
        "recovered": socket.recovered,
        "channels": sorted(socket.channels),
        "context": context,
    }


@handlers.on("tell")
def tell(request, socket, context, method, *args):
    """One of the socket's sending methods: ``broadcast_channel``, ``send_and_broadcast`` ..."""
    getattr(socket, method)(*args)


@handlers.on("burst")
def burst(request, socket, context, channel, count):
    """``count`` numbered messages to the others in ``channel``, paced, from a handler thread: they
    go on while a client drops and comes back."""
    for number in range(count):
        socket.broadcast_channel(number, channel)
        time.sleep(0.002)


@handlers.on("send_to")
def send_to(request, socket, context, session_id, message):
    """``tidings.send``: nobody takes it now if that socket is away (it is kept for it, though)."""
    try:
        return {"reached": tidings.send(session_id, message)}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}


@handlers.on("emit_to")
def emit_to(request, socket, context, event, args, to, exclude):
    """``tidings.emit``: an event to several targets, or to one less some."""
    try:
        return {"reached": tidings.emit(event, *args, to=to, exclude=exclude)}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}


app = tidings.Server(handlers=handlers, connection_state_recovery=60)
