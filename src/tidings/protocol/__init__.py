"""Sans-I/O Engine.IO v4 and Socket.IO v5 protocol: strings and bytes in, packets out.

Nothing here touches a socket, an event loop or a thread, so every rule of the wire can be tested with
plain byte strings and reused by any server.
"""

from tidings.errors import ProtocolError
from tidings.protocol import engineio, socketio

__all__ = ["ProtocolError", "engineio", "socketio"]
