"""The server of tests/interop/test_events.py: `tidings run tests/interop/events_app.py:app`.

Events make it emit in each way there is (``tidings.emit`` from a handler thread, ``tidings.aemit``
on the loop, ``socket.emit(..., to=)``, ``Server.emit``); its ``message`` handlers ack what they got;
namespace ``/any`` has a catch-all.
"""

from __future__ import annotations

import tidings

handlers = tidings.Handlers()


def outcome(emitting):
    """What an emit returned, or why it raised."""
    try:
        return {"reached": emitting()}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}
    except ValueError as error:
        return {"value_error": str(error)}


@handlers.on("emit")
def module_emit(request, socket, context, event, args, to, exclude=None):
    """``tidings.emit`` from a ``def`` handler: another thread than the loop's, as a WSGI view is."""
    return outcome(lambda: tidings.emit(event, *args, to=to, exclude=exclude))


@handlers.on("aemit")
async def module_aemit(request, socket, context, event, args, to, exclude=None):
    try:
        return {"reached": await tidings.aemit(event, *args, to=to, exclude=exclude)}
    except tidings.NoSocket as error:
        return {"no_socket": str(error)}


@handlers.on("socket_emit")
def socket_emit(request, socket, context, event, args, to, but_me=False):
    """``socket.emit(..., to=)``: everyone ``to`` names, or, ``but_me``, everyone but this socket."""
    return outcome(lambda: socket.emit(event, *args, to=to, exclude=socket if but_me else None))


@handlers.on("server_emit")
def server_emit(request, socket, context, event, args, to=None, exclude=None):
    return outcome(lambda: app.emit(event, *args, to=to, exclude=exclude))


@handlers.on("message")
def message(request, socket, context, *args):
    """Acks what it got: the seeds' ``(message, channel)``, or any other shape as sent."""
    return ["message", *args]


@handlers.on_message(channel="^room-")
def in_a_room(request, socket, context, message, channel):
    context.setdefault("room messages", []).append([message, channel])


@handlers.on("room_messages")
def room_messages(request, socket, context):
    return context.get("room messages", [])


@handlers.on("*", namespace="/any")
def any_event(request, socket, context, event, *args):
    """The catch-all of /any: acks the event's name and arguments."""
    if event == "forbidden":
        raise tidings.Refuse("not that one")
    return [event, *args]


@handlers.on("known", namespace="/any")
def known(request, socket, context, *args):
    return ["known", *args]


app = tidings.Server(handlers=handlers)
