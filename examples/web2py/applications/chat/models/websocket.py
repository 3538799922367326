# Models run before every controller: this one gives the seed's controller its request.websocket.
import contextlib

import tidings
from tidings.integrations.web2py import enable_websocket

enable_websocket()


def process_message(message):
    """Pass what a WebSocket client says on to the Socket.IO clients in the "chat" channel."""
    with contextlib.suppress(tidings.NoSocket):  # nobody listening
        tidings.broadcast_channel(message, "chat")
