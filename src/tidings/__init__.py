"""tidings: real-time channels for Python web apps, over Socket.IO and WebSocket.

>>> import tidings
>>> @tidings.on("chat")
... def chat(request, socket, context, text):
...     return {"echo": text}
>>> app = tidings.Server()

``import tidings`` loads none of tidings' modules: each public name is imported on first use
(PEP 562), so a process that needs only ``tidings.protocol`` or a publisher pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Where each public name lives: ``tidings.X`` is ``getattr(import_module(_SOURCES[X]), X)``.
_SOURCES = {
    "AdminUI": "tidings.server.admin",
    "AsyncPublisher": "tidings.api.publisher",
    "AsyncWebSocket": "tidings.server.plain_websocket",
    "BrokerError": "tidings.errors",
    "Handlers": "tidings.api.handlers",
    "NoSocket": "tidings.errors",
    "ProtocolError": "tidings.errors",
    "Publisher": "tidings.api.publisher",
    "Refuse": "tidings.api.handlers",
    "Request": "tidings.api.request",
    "Server": "tidings.server.app",
    "Settings": "tidings.settings",
    "Socket": "tidings.api.socket",
    "TidingsError": "tidings.errors",
    "WebSocket": "tidings.server.plain_websocket",
    "abroadcast": "tidings.api.sending",
    "aemit": "tidings.api.sending",
    "abroadcast_channel": "tidings.api.sending",
    "apresence": "tidings.api.sending",
    "asend": "tidings.api.sending",
    "broadcast": "tidings.api.sending",
    "broadcast_channel": "tidings.api.sending",
    "default_handlers": "tidings.api.handlers",
    "emit": "tidings.api.sending",
    "presence": "tidings.api.sending",
    "script_tag": "tidings.integrations.templates",
    "send": "tidings.api.sending",
}
#: The decorators of the default registry: ``@tidings.on("chat")``, ``@tidings.websocket("/ws")``.
_DEFAULT_REGISTRY = ("on", "websocket")

__all__ = [
    "AdminUI",
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
    "TidingsError",
    "WebSocket",
    "__version__",
    "abroadcast",
    "abroadcast_channel",
    "aemit",
    "apresence",
    "asend",
    "broadcast",
    "broadcast_channel",
    "emit",
    "events",
    "on",
    "presence",
    "script_tag",
    "send",
    "websocket",
]

if TYPE_CHECKING:
    from tidings import events
    from tidings.api.handlers import Handlers, Refuse, default_handlers
    from tidings.api.publisher import AsyncPublisher, Publisher
    from tidings.api.request import Request
    from tidings.api.sending import (
        abroadcast,
        abroadcast_channel,
        aemit,
        apresence,
        asend,
        broadcast,
        broadcast_channel,
        emit,
        presence,
        send,
    )
    from tidings.api.socket import Socket
    from tidings.errors import BrokerError, NoSocket, ProtocolError, TidingsError
    from tidings.integrations.templates import script_tag
    from tidings.server.app import Server
    from tidings.server.plain_websocket import AsyncWebSocket, WebSocket
    from tidings.settings import Settings

    on = default_handlers.on
    websocket = default_handlers.websocket
else:

    def __getattr__(name: str) -> Any:
        """Import a public name on its first use, then keep it here so the next use costs nothing."""
        if name in _DEFAULT_REGISTRY:
            value = getattr(importlib.import_module("tidings.api.handlers").default_handlers, name)
        elif name == "events":
            value = importlib.import_module("tidings.events")
        elif name in _SOURCES:
            value = getattr(importlib.import_module(_SOURCES[name]), name)
        else:
            raise AttributeError(f"module 'tidings' has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
