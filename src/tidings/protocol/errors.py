"""The one error the protocol layer raises."""


class ProtocolError(Exception):
    """Input that breaks the Engine.IO or Socket.IO protocol.

    The message is short and safe to show the peer: the server sends it as the reason of the close
    (HTTP 400 body on polling, WebSocket close reason) and logs it.
    """
