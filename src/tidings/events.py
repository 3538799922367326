"""The seeds' events, as decorators on the default handler registry.

>>> from tidings.events import on_message
>>> @on_message(channel="^room-")
... def chat(request, socket, context, message):
...     socket.broadcast_channel(message)

Each handler is called as ``(request, socket, context, ...)``; see :class:`tidings.Handlers` for what
each event passes and when it fires. All but ``on_connect`` take ``channel=`` (a regular expression,
matched with ``re.match``) to fire only for matching channels; all take ``namespace=``. A message
addressed to a channel the socket is not in is refused unless a matching ``on_message`` handler was
registered with ``members_only=False``.
"""

from tidings.api.handlers import default_handlers

on_connect = default_handlers.on_connect
on_message = default_handlers.on_message
on_subscribe = default_handlers.on_subscribe
on_unsubscribe = default_handlers.on_unsubscribe
on_error = default_handlers.on_error
on_disconnect = default_handlers.on_disconnect
on_finish = default_handlers.on_finish

__all__ = [
    "on_connect",
    "on_disconnect",
    "on_error",
    "on_finish",
    "on_message",
    "on_subscribe",
    "on_unsubscribe",
]
