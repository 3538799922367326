"""tidings: real-time channels for Python web apps, over Socket.IO and WebSocket.

>>> import tidings
>>> @tidings.on("chat")
... def chat(request, socket, context, text):
...     return {"echo": text}
>>> app = tidings.Server()
"""

from tidings import events
from tidings.brokers import BrokerError
from tidings.hub import NoSocket
from tidings.integrations.templates import script_tag
from tidings.protocol import ProtocolError
from tidings.publisher import AsyncPublisher, Publisher
from tidings.sending import (
    abroadcast,
    abroadcast_channel,
    apresence,
    asend,
    broadcast,
    broadcast_channel,
    presence,
    send,
)
from tidings.server.app import Server
from tidings.server.config import Settings
from tidings.server.handlers import Handlers, Refuse, default_handlers
from tidings.server.request import Request
from tidings.server.socketio import Socket
from tidings.server.websocket import AsyncWebSocket, WebSocket

__version__ = "0.1.0"

#: Register a handler for a Socket.IO event on the default registry: ``@tidings.on("chat")``.
on = default_handlers.on
#: Register a plain WebSocket endpoint on the default registry: ``@tidings.websocket("/ws")``.
websocket = default_handlers.websocket

__all__ = [
    "AsyncPublisher",
    "AsyncWebSocket",
    "BrokerError",
    "Handlers",
    "NoSocket",
    "ProtocolError",
    "Publisher",
    "Refuse",
    "Request",
    "Server",
    "Settings",
    "Socket",
    "WebSocket",
    "__version__",
    "abroadcast",
    "abroadcast_channel",
    "apresence",
    "asend",
    "broadcast",
    "broadcast_channel",
    "events",
    "on",
    "presence",
    "script_tag",
    "send",
    "websocket",
]
