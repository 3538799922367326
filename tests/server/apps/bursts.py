"""An app for the burst tests: the hostile tests' chat room (its bystander talks there), and one
event that runs a script of sends in a single loop iteration."""

from __future__ import annotations

import tidings
from tests.hostile import app as chat


@tidings.on("script")
async def script(request, socket, context, steps):
    """Runs ``steps`` one after the other without awaiting: every publish of the script falls in
    the same loop iteration, so a channel's publishes make one burst."""
    for step, *args in steps:
        if step == "publish":
            message, channel = args
            tidings.broadcast_channel(message, channel)
        elif step == "broadcast":
            tidings.broadcast(args[0])
        elif step == "send":
            session_id, message = args
            tidings.send(session_id, message)
        elif step == "join":
            socket.subscribe(args[0])
        elif step == "leave":
            socket.unsubscribe(args[0])
    return "done"


app = tidings.Server(wsgi_app=chat.page, max_buffer=64 * 1024)
