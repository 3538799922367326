"""Server settings: every limit and timing in one place, each with its default and its cost."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.brokers.history import check_options


def _message_log_format() -> str | None:
    return os.environ.get("TIDINGS_MESSAGE_LOG_FORMAT") or None


@dataclass(frozen=True, slots=True)
class Settings:
    """What a :class:`tidings.Server` is allowed to do and for how long.

    Attributes:
        path: URL prefix of the Engine.IO endpoint; official clients use ``/socket.io/``.
        client_path: URL the browser client script ``tidings.js`` is served at
            (:func:`tidings.script_tag` writes it into pages); its ES module face, ``tidings.mjs``,
            is served beside it: the same path with ``.mjs`` for ``.js``.
        transports: the transports offered; drop ``"polling"`` for WebSocket-only deployments
            (no sticky sessions needed behind a load balancer).
        ping_interval: seconds between the server's pings (Engine.IO heartbeat).
        ping_timeout: seconds a client has to answer a ping before its session is closed.
        upgrade_timeout: seconds a polling client has to finish an upgrade to WebSocket once
            it started one; the probe WebSocket is closed after that, polling goes on.
        connect_timeout: seconds a new Engine.IO session has to connect a namespace; closed then.
        max_payload: largest Engine.IO message or polling request body, in bytes. A larger
            WebSocket message closes the connection with 1009, a larger POST gets 413; in both cases
            the session ends. Also announced to clients in the handshake.
        max_buffer: bytes of unsent packets one session may hold (a slow or stalled consumer).
            Passing it closes that session with the reason "send buffer full"; memory stays
            bounded at roughly this much per connection.
        max_attachments: binary attachments one Socket.IO packet may announce.
        max_sessions: Engine.IO sessions this process holds at once. A handshake beyond it gets
            HTTP 503 ("Server at capacity"); existing sessions are not affected. Each idle session
            costs a few KiB, so the default bounds that memory to a few hundred MiB.
        cors_allowed_origins: ``None`` (default) allows requests without an ``Origin`` header and
            those whose origin is the server's own host; a list allows exactly those origins;
            ``"*"`` allows any. Others get 403 (polling and WebSocket alike).
        cors_credentials: send ``Access-Control-Allow-Credentials: true`` to allowed origins.
        handler_threads: worker threads for ``def`` handlers. A blocked handler holds one; a
            connection's events wait for its previous one, other connections do not.
        max_channels: channels one socket may be subscribed to at once. A subscription beyond it
            is refused ("too many channels"); each membership costs about 200 bytes.
        max_channel_length: longest channel name, in characters; a longer one is refused.
        max_sync_websockets: blocking (``def``) WebSocket endpoints and WSGI WebSocket views
            running at once, each in a thread of its own (an idle one is a parked thread: about
            40 KiB of memory, no CPU). An upgrade beyond it gets HTTP 503.
        websocket_max_queue: messages a plain WebSocket endpoint has received but not read yet;
            past it tidings stops reading the socket, so TCP slows the client down.
        message_log_format: ``%``-style format logged (logger ``tidings.messages``, level INFO) for
            each message a client sends, over the request's WSGI environ keys plus ``TIME``,
            ``MESSAGE``, ``CHANNEL`` and ``SESSION_ID``; e.g. ``"%(TIME)s %(REMOTE_ADDR)s
            %(MESSAGE)s"``. ``None`` turns it off and costs nothing. Defaults to the environment
            variable ``TIDINGS_MESSAGE_LOG_FORMAT``.
        history: channels that keep a history, as ``(channel regex, size, ttl)`` rules, the first
            that matches (``re.match``) wins: the last ``size`` messages, kept ``ttl`` seconds after
            the channel's last message. Their messages carry a position, and a client that
            subscribes again with its last one gets what it missed (docs/channels.md). Costs
            ``size`` messages of memory per channel (in Redis with the Redis broker, which also
            runs a script per message instead of a PUBLISH). Off by default.
        presence: regexes of channels whose members are tracked (who is in, with their
            ``socket.presence_info``) and told of each other's ``join`` and ``leave``. Costs one
            entry per member (a Redis hash entry with the Redis broker) and one message to the
            channel per join and leave. Off by default.
        presence_timeout: seconds after which the presence entries of a server process that
            stopped (was killed, lost its network) are gone (Redis broker); each process renews its
            entries every third of it.
        max_binary_size: bytes the binary attachments of one Socket.IO packet may hold together:
            what a session holds while a packet's attachments come in. Passing it is a protocol
            error (the session is closed, "binary attachments over N bytes"). The default,
            ``max_payload``'s, lets a binary packet carry what one message can, in one attachment
            or several, and keeps a relayed binary message well inside each recipient's
            ``max_buffer``.
        attachment_timeout: seconds a client has from the text part of a binary packet to its last
            attachment; the session is closed then ("binary attachments not received within Ns").
            Long enough for ``max_binary_size`` over a slow mobile uplink (1 MB at 256 kbit/s
            takes 32 s); memory meanwhile is bounded by ``max_binary_size``.
        max_namespaces: namespaces one session may be connected to at once (each costs a socket,
            about 2 KiB, and with the Redis broker possibly a subscription). A connect beyond it
            gets ``connect_error`` "too many namespaces"; the session and its other namespaces go
            on. Matters with ``namespaces="*"``, where a client can name as many as it likes.
    """

    path: str = "/socket.io/"
    client_path: str = "/tidings/tidings.js"
    transports: tuple[str, ...] = ("polling", "websocket")
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    connect_timeout: float = 45.0
    max_payload: int = 1_000_000
    max_buffer: int = 4 * 1024 * 1024
    max_attachments: int = 10
    max_sessions: int = 100_000
    cors_allowed_origins: str | Sequence[str] | None = None
    cors_credentials: bool = True
    handler_threads: int = 32
    max_channels: int = 100
    max_channel_length: int = 200
    max_sync_websockets: int = 1000
    websocket_max_queue: int = 32
    message_log_format: str | None = field(default_factory=_message_log_format)
    history: Sequence[tuple[str, int, float]] = ()
    presence: Sequence[str] = ()
    presence_timeout: float = 30.0
    # -- hostile clients: packets (binary attachments, namespaces) --
    max_binary_size: int = 1_000_000
    attachment_timeout: float = 60.0
    max_namespaces: int = 32

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or not self.path.endswith("/"):
            raise ValueError(f"path must start and end with '/': {self.path!r}")
        unknown = set(self.transports) - {"polling", "websocket"}
        if unknown or not self.transports:
            raise ValueError(f"transports must be 'polling' and/or 'websocket': {self.transports}")
        history: Sequence[Any] = self.history
        check_options(history, self.presence)
        for name in (
            "ping_interval",
            "ping_timeout",
            "upgrade_timeout",
            "connect_timeout",
            "presence_timeout",
            "attachment_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        limits = (
            "max_payload",
            "max_buffer",
            "max_attachments",
            "max_sessions",
            "handler_threads",
            "max_channels",
            "max_channel_length",
            "max_sync_websockets",
            "websocket_max_queue",
            "max_binary_size",
            "max_namespaces",
        )
        for name in limits:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.message_log_format is not None:
            try:
                self.message_log_format % defaultdict(str)
            except ValueError as error:  # a broken format: say so now, not at the first message
                raise ValueError(f"message_log_format: {error}") from None
