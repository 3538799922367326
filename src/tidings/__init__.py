"""tidings: real-time channels for Python web apps, over Socket.IO and WebSocket.

>>> import tidings
>>> @tidings.on("chat")
... def chat(request, socket, context, text):
...     return {"echo": text}
>>> app = tidings.Server()
"""

from tidings import events
from tidings.api.handlers import Handlers, Refuse, default_handlers
from tidings.api.publisher import AsyncPublisher, Publisher
from tidings.api.request import Request
from tidings.api.sending import (
    abroadcast,
    abroadcast_channel,
    apresence,
    asend,
    broadcast,
    broadcast_channel,
    presence,
    send,
)
from tidings.api.socket import Socket
from tidings.brokers import BrokerError
from tidings.errors import NoSocket
from tidings.integrations.templates import script_tag
from tidings.protocol import ProtocolError
from tidings.server.app import Server
from tidings.server.plain_websocket import AsyncWebSocket, WebSocket
from tidings.settings import Settings

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
