"""Every error tidings raises on purpose, under one base: ``except tidings.TidingsError``.

::

    TidingsError
    ├── ProtocolError        a peer broke Engine.IO, Socket.IO or RFC 6455 (safe to show it)
    │   └── IllegalTransition   a step a connection's state does not allow
    ├── NoSocket             nobody could receive a message
    ├── BrokerError          the broker (Redis) could not be reached or lost a message; also a
    │                        ConnectionError
    └── Refuse               a handler refuses what a client asked for (:mod:`tidings.api.handlers`)

Errors in the caller's own arguments stay the builtins: ``ValueError`` (a bad channel name or
session id) and ``TypeError`` (a value JSON cannot hold).
"""


class TidingsError(Exception):
    """The base of every error tidings raises on purpose."""


class ProtocolError(TidingsError):
    """Input that breaks the Engine.IO, Socket.IO or WebSocket protocol.

    The message is short and safe to show the peer: the server sends it as the reason of the close
    (HTTP 400 body on polling, WebSocket close reason) and logs it.
    """


class IllegalTransition(ProtocolError):
    """A step a connection's state does not allow: the ``TRANSITIONS`` table of each state machine
    in :mod:`tidings.protocol` lists the legal ones. A peer's packet out of turn, or a bug."""


class NoSocket(TidingsError):
    """Nobody could receive the message: no connected socket, no such session, an empty channel,
    or no server running in this process."""


class BrokerError(TidingsError, ConnectionError):
    """The broker could not be reached, or lost the message (e.g. Redis went away)."""
