"""Server settings: every limit and timing in one place, each with its default and its cost."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.channels import MAX_CHANNEL_LENGTH, RecoveryRule, check_options
from tidings.protocol.origin import parse_allowed_origins

# Defaults of the settings a hub or a broker needs without a server's Settings too (a hub on its own, a
# Publisher's broker).
LOOP_CALL_TIMEOUT = 10.0
REDIS_MAX_BATCH = 512
REDIS_READY_TIMEOUT = 5.0
# The Redis broker's subscriber backlog (issue 16, item 4).
REDIS_MAX_BACKLOG = 8 * 1024 * 1024
REDIS_BACKLOG_INTERVAL = 0.5
BROKER_BUFFER = 10_000
BROKER_BUFFER_POLICY = "drop-oldest"
BROKER_BUFFER_POLICIES = ("drop-oldest", "raise")


def _message_log_format() -> str | None:
    return os.environ.get("TIDINGS_MESSAGE_LOG_FORMAT") or None


#: The environment variable the HTTP server API's key defaults to.
API_KEY_ENV = "TIDINGS_API_KEY"


def _api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


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
        cors_allowed_origins: which browser pages may connect, by their ``Origin`` header.
            ``None`` (default): the server's own origin, i.e. the request's scheme (``https`` behind
            a trusted proxy that sends ``X-Forwarded-Proto``), ``Host`` and port; a list: exactly
            those origins (``"https://chat.example.org"``; compared by scheme, host and port, an
            absent port being the scheme's default); ``"*"``: any. Requests without ``Origin``
            (no browser's cross-origin request) are allowed; ``Origin: null`` (sandboxed frames,
            ``file:`` pages) never is. Others get 403, polling and WebSocket alike.
        cors_credentials: whether pages of other origins may send the user's cookies with their
            polling requests (``Access-Control-Allow-Credentials: true``). ``None`` (default): yes
            for the origins of a list and the server's own, no with ``"*"`` (which is then
            answered ``Access-Control-Allow-Origin: *``). ``True`` with ``"*"`` lets every site on
            the web make requests carrying its visitors' cookies for this server, acting as them;
            it is allowed, with a warning in the log.
        handler_threads: worker threads for ``def`` handlers. A blocked handler holds one; a
            connection's events wait for its previous one, other connections do not.
        max_channels: channels one socket may be subscribed to at once. A subscription beyond it
            is refused ("too many channels"); each membership costs about 200 bytes.
        max_channel_length: longest channel name, in characters; a longer one is refused (a
            client's subscribe or message is acked with the reason; ``broadcast_channel`` and the
            other sends from code raise ``ValueError``).
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
            ``socket.presence_info``) and told who came and went by ``presence`` notices, one per
            channel per ``presence_batch_interval`` at most (docs/channels.md). Costs one entry per
            member (a Redis hash entry with the Redis broker). Off by default.
        presence_timeout: seconds after which the presence entries of a server process that
            stopped (was killed, lost its network) are gone, announced as left to the members of
            their channels (Redis broker); each process renews its entries every third of it.
        presence_batch_interval: seconds the joins and leaves of a channel with presence are
            gathered for before its members get them, in one ``presence`` notice: the shortest
            wait (see ``presence_fanout_rate``).
        presence_fanout_rate: notices a channel's presence may hand its members per second, in
            all: a channel with ``N`` members gets a notice every ``N / presence_fanout_rate``
            seconds at most (when more than ``presence_batch_interval``), so the work of a join or
            a leave stays flat however big the channel.
        presence_max_diff: members a ``presence`` notice names at most; a notice for more joins
            and leaves than that gives the count alone.
        presence_max_list: members a client's ``emit("presence", channel)`` is answered with at
            most (with the count of all of them); ``tidings.presence`` has no limit.
        max_sessions_per_address: Engine.IO sessions one client address may hold open at once (an
            IPv6 client: its /64 network). A handshake beyond it gets HTTP 429 ``{"code": 3,
            "message": "Too many sessions from this address"}``; its other sessions go on. The
            address is the peer's, or the client's as a trusted proxy gives it (docs/deploy.md):
            behind a proxy uvicorn does not trust, every client is the proxy's address and they
            share this limit. The default leaves room for an office or a campus behind one NAT,
            each person with a few tabs, while one address takes at most 1% of ``max_sessions``.
        session_rate_per_address: new sessions per second one client address may open, on
            average (a token bucket); a handshake beyond it gets HTTP 429 ``{"code": 3, "message":
            "Too many new sessions from this address"}``. Refusing costs the server less than
            opening and closing; the table of addresses costs about 200 bytes each, and holds only
            those that opened sessions faster than this lately.
        session_burst_per_address: new sessions one client address may open at once, before
            ``session_rate_per_address`` holds it back: as many as ``max_sessions_per_address``, so
            that all the clients of a NAT'd office can reconnect at once after a restart.
        close_timeout: seconds a closing connection may stall. A WebSocket closed by the server
            waits this long for the client's close frame, then closes. A connection (HTTP or
            WebSocket) closed with bytes still unsent whose client took none of them for this long
            is reset: a client that never reads cannot hold a closed connection, nor the memory of
            what was left to send it. One still reading, however slowly, gets more time.
        header_timeout: seconds a connection has to send a complete HTTP request head, from the
            moment it connects (or, on a kept-alive connection, from the first byte of the next
            request); it is closed then. Idle and slowly dribbling connections (slowloris) cost a
            file descriptor each only this long. ``tidings run`` only.
        max_request_head: bytes of an HTTP request line and headers; a longer head gets HTTP 431
            and the connection is closed. ``tidings run`` only.
        max_connections: TCP connections this process holds at once (HTTP, WebSocket, and closing
            ones). A connection beyond it is closed as soon as it is accepted, and a warning is
            logged (at most every 10 s). ``tidings run`` raises its soft limit on open files to the
            hard one and lowers this below that limit (a tenth of it, at least 64, is kept for
            Redis, files and the listening socket), logging the value in force. Each idle
            connection costs a file descriptor and a few KiB. ``tidings run`` only.
        max_connections_per_address: TCP connections one peer address may hold at once; beyond it
            its new connections are closed at once, with a warning (at most every 10 s). Addresses
            trusted as proxies (uvicorn's ``forwarded_allow_ips``, ``tidings run
            --forwarded-allow-ips``, default 127.0.0.1 and ::1) are exempt: every client behind a
            proxy shares its address. Raise it for many clients behind one NAT. ``tidings run``
            only.
        websocket_control_frames_per_minute: pings and pongs a WebSocket client may send in one
            minute (counted per minute since its first); one more closes the connection with 1008
            "too many control frames". Browsers send none; other clients one every few seconds at
            most. Pings that arrive together are answered with one pong (RFC 6455 §5.5.3).
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
        max_pending_events: events one connection has sent whose handlers have not run yet (its
            handlers run one after another). Once this many wait, tidings takes no more of the
            client's messages until half of them have run: a WebSocket is not read (TCP slows
            the client down), a polling POST is answered only then. Nobody is disconnected; a
            client sending faster than its handlers run is slowed to their pace.
        max_pending_bytes: the same, counted in bytes of the waiting events (a few large ones);
            what a connection's waiting events hold is bounded by about this plus one message.
        body_timeout: seconds a long-polling POST has to send its whole body; past it the answer
            is HTTP 408 and the session ends. A body that trickles in holds a connection and up to
            ``max_payload`` bytes only this long. Long enough for ``max_payload`` over a slow
            mobile uplink (1 MB at 256 kbit/s takes 32 s).
        loop_call_timeout: seconds a call from another thread (a ``def`` handler, a WSGI view, a
            background thread: ``socket.emit``, ``socket.subscribe``, ``tidings.broadcast_channel``
            and the other sends, ``tidings.presence``) waits for the server's event loop to run it,
            and, with the Redis broker, for Redis's answer (the count). Past it the call gives up
            with :class:`NoSocket` ("the server's event loop did not answer within Ns"), though
            what it asked for may still be done later; the calling thread (a handler thread, say)
            is held at most this long by a blocked or overloaded loop or a Redis that does not
            answer.
        redis_max_batch: commands the Redis broker sends Redis in one pipeline, one write and one
            round trip: the PUBLISHes, history appends and presence updates of a node, in the order
            its calls were made. What is queued beyond it goes in the next pipeline, once Redis has
            answered this one, so a node sends at most this many per round trip. A pipeline holds
            up to this many encoded messages at once; when its write fails (Redis went away) they
            wait in the buffer (``broker_buffer``) and are sent again.
        redis_ready_timeout: seconds a subscribe waits for Redis to confirm the node's SUBSCRIBE
            (Redis broker). A client's ``subscribe`` is acked, and ``socket.subscribe()`` returns,
            once it is confirmed, so that what is published after the ack reaches the client; past
            this, the ack goes out anyway, with a warning in the log ("subscription(s)
            unconfirmed"), and messages other nodes publish before Redis confirms may miss it.
        redis_max_backlog: bytes Redis may hold for a node that it has not read yet (Redis
            broker): what a node whose event loop is stuck or too busy falls behind by. Past it the
            node drops its subscriber connection itself, before Redis' own limit
            (``client-output-buffer-limit pubsub``, 32 MB at once or 8 MB for 60 s by default) cuts
            it: the backlog is lost, the node's history channels catch up from Redis, and the
            members of its other channels get the ``lagging`` event (docs/cluster.md). Costs up to
            this much of Redis' memory per node; keep it under Redis' limits.
        redis_backlog_interval: seconds between two looks at the backlog, from a thread of the
            broker's own (one ``CLIENT LIST TYPE pubsub``, as long as the loop may be stuck).
        connection_state_recovery: seconds a Socket.IO client whose transport dropped has to come
            back and take up its socket again (Socket.IO's connection state recovery, for the
            official clients 4.x: ``maxDisconnectionDuration``; Node's default is 120): the same
            session id, its channels, its ``context`` and ``presence_info``, and the events sent to
            it meanwhile, in order (docs/server.md). ``None`` (default, as in Node): off. On, every
            event a socket gets from a broadcast or a send carries an offset as its last argument,
            each socket's state is kept this long after its transport drops (a few hundred bytes
            plus its context, as JSON), and every send is appended to a packet log (with the Redis
            broker: a Redis stream, and a script per message instead of a PUBLISH).
        recovery_max_packets: packets the log of connection state recovery holds (about that many
            with the Redis broker), the oldest dropped first; a packet also goes once older than
            ``connection_state_recovery``. Each costs one message of memory (in Redis with the
            Redis broker), so a flood of messages cannot grow it without end; a client whose last
            packet was dropped from the log gets a new session instead of its old one.
        metrics_path: the path Prometheus metrics are served at (``"/metrics"``), by the server's own
            app, before the user's app; ``None`` (default): not served. Needs ``prometheus-client``.
            A browser page of an origin ``cors_allowed_origins`` refuses gets 403 there, as on the
            endpoint. See docs/operations.md, "Metrics".
        metrics_event_names: event names the metrics count one by one; events of further names are
            counted together as ``"other"`` (clients make names up: this bounds the series).
        broker_buffer: writes (publishes, history appends, presence changes, kept sessions) the
            Redis broker keeps while Redis cannot be reached, beside the one pipeline in flight;
            they go out in order once it answers again (on another master after a Sentinel
            failover). Each holds one encoded message. A publish that waits returns 0 and raises
            no :class:`~tidings.NoSocket`: nobody took it yet. 0: no buffer, such a publish raises
            :class:`~tidings.brokers.BrokerError` (a socket's sends are dropped and logged).
        broker_buffer_policy: what a write does when ``broker_buffer`` of them wait already:
            ``"drop-oldest"`` (default): the oldest waiting one is dropped, with a warning in the log
            (and, once Redis answers again, how many were dropped); ``"raise"``: the new one is
            refused, ``tidings.broadcast_channel`` and the other sends raise
            :class:`~tidings.brokers.BrokerError` (a socket's sends are dropped).
        shutdown_timeout: seconds a stopping server (SIGTERM, Ctrl+C, a worker restarted by SIGHUP)
            gives its running handlers to finish, once it has stopped accepting connections and told
            its clients to reconnect; the handlers still running then are abandoned (cancelled, a
            ``def`` handler's thread left to the process's exit) with a warning naming how many.
            ``tidings run`` waits as long for the HTTP requests and WebSocket endpoints still open.
        api_key: the key of the HTTP server API (docs/operations.md, "HTTP API"); ``None`` (default:
            the environment variable ``TIDINGS_API_KEY``, else none) turns the API off. A backend
            sends it as ``Authorization: apikey <key>`` or ``X-API-Key: <key>``; a request without
            it, or with another, gets 401 and nothing is done. Anyone with it can send to every
            socket and disconnect any: a long random string, kept like a password.
        api_path: where the HTTP server API is served: ``POST <api_path>/<method>``, and its
            OpenAPI document at ``<api_path>/openapi.json``.
        api_max_body: bytes of one API request body; a larger one gets HTTP 413 unread past this.
            It bounds what one message sent through the API can hold (and the memory a request takes).
        api_max_targets: channels and session ids one API ``emit`` may name in ``to`` and in
            ``exclude``, each; more gets HTTP 422.
        api_survey_timeout: seconds the API's ``channels`` and ``disconnect`` wait for the answers
            of the other nodes (Redis broker), which each node gives from its own sockets; a node
            that has not answered by then is left out of the result.
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
    cors_credentials: bool | None = None
    handler_threads: int = 32
    max_channels: int = 100
    max_channel_length: int = MAX_CHANNEL_LENGTH
    max_sync_websockets: int = 1000
    websocket_max_queue: int = 32
    message_log_format: str | None = field(default_factory=_message_log_format)
    history: Sequence[tuple[str, int, float]] = ()
    presence: Sequence[str] = ()
    presence_timeout: float = 30.0
    presence_batch_interval: float = 0.05
    presence_fanout_rate: int = 20_000
    presence_max_diff: int = 100
    presence_max_list: int = 1000
    # -- sessions per client address --
    max_sessions_per_address: int = 1000
    session_rate_per_address: float = 20.0
    session_burst_per_address: int = 1000
    # -- connections: timeouts, counts, control frames --
    close_timeout: float = 10.0
    header_timeout: float = 10.0
    max_request_head: int = 65536
    max_connections: int = 100_000
    max_connections_per_address: int = 1000
    websocket_control_frames_per_minute: int = 100
    # -- packets: binary attachments, namespaces --
    max_binary_size: int = 1_000_000
    attachment_timeout: float = 60.0
    max_namespaces: int = 32
    # -- received events waiting for their handlers --
    max_pending_events: int = 128
    max_pending_bytes: int = 1_000_000
    body_timeout: float = 60.0
    # -- calls from other threads, the Redis broker --
    loop_call_timeout: float = LOOP_CALL_TIMEOUT
    redis_max_batch: int = REDIS_MAX_BATCH
    redis_ready_timeout: float = REDIS_READY_TIMEOUT
    # -- the Redis broker: a node's subscriber backlog --
    redis_max_backlog: int = REDIS_MAX_BACKLOG
    redis_backlog_interval: float = REDIS_BACKLOG_INTERVAL
    # -- connection state recovery --
    connection_state_recovery: float | None = None
    recovery_max_packets: int = 10_000
    # -- metrics --
    metrics_path: str | None = None
    metrics_event_names: int = 100
    # -- the Redis broker while Redis cannot be reached --
    broker_buffer: int = BROKER_BUFFER
    broker_buffer_policy: str = BROKER_BUFFER_POLICY
    # -- graceful shutdown --
    shutdown_timeout: float = 10.0
    # -- the HTTP server API (server/http_api.py) --
    api_key: str | None = field(default_factory=_api_key, repr=False)
    api_path: str = "/api"
    api_max_body: int = 1_000_000
    api_max_targets: int = 1000
    api_survey_timeout: float = 2.0

    @property
    def recovery(self) -> RecoveryRule | None:
        """``connection_state_recovery`` and ``recovery_max_packets`` as one rule; None: off."""
        if self.connection_state_recovery is None:
            return None
        return RecoveryRule(self.connection_state_recovery, self.recovery_max_packets)

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or not self.path.endswith("/"):
            raise ValueError(f"path must start and end with '/': {self.path!r}")
        unknown = set(self.transports) - {"polling", "websocket"}
        if unknown or not self.transports:
            raise ValueError(f"transports must be 'polling' and/or 'websocket': {self.transports}")
        history: Sequence[Any] = self.history
        check_options(history, self.presence)
        positive = (
            "ping_interval",
            "ping_timeout",
            "upgrade_timeout",
            "connect_timeout",
            "presence_timeout",
            "presence_batch_interval",
            "session_rate_per_address",
            "close_timeout",
            "header_timeout",
            "attachment_timeout",
            "body_timeout",
            "loop_call_timeout",
            "redis_ready_timeout",
            "redis_backlog_interval",
            "shutdown_timeout",
        )
        for name in positive:
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
            "presence_fanout_rate",
            "presence_max_diff",
            "presence_max_list",
            "max_sessions_per_address",
            "session_burst_per_address",
            "max_request_head",
            "max_connections",
            "max_connections_per_address",
            "websocket_control_frames_per_minute",
            "max_binary_size",
            "max_namespaces",
            "max_pending_events",
            "max_pending_bytes",
            "redis_max_batch",
            "redis_max_backlog",
            "recovery_max_packets",
            "metrics_event_names",
        )
        for name in limits:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.broker_buffer < 0:
            raise ValueError("broker_buffer must be 0 (no buffer) or more")
        if self.broker_buffer_policy not in BROKER_BUFFER_POLICIES:
            raise ValueError(f"broker_buffer_policy must be one of {', '.join(BROKER_BUFFER_POLICIES)}")
        recovery = self.connection_state_recovery
        if recovery is not None and (isinstance(recovery, bool) or not recovery > 0):
            raise ValueError("connection_state_recovery must be None (off) or a positive number of seconds")
        parse_allowed_origins(self.cors_allowed_origins)  # an entry that is no origin: say so now
        if self.metrics_path is not None and not self.metrics_path.startswith("/"):
            raise ValueError(f"metrics_path must start with '/': {self.metrics_path!r}")
        if self.message_log_format is not None:
            try:
                self.message_log_format % defaultdict(str)
            except ValueError as error:  # a broken format: say so now, not at the first message
                raise ValueError(f"message_log_format: {error}") from None
        self._check_api()

    def _check_api(self) -> None:
        """The HTTP server API's settings: a path of its own, positive limits."""
        if (
            not self.api_path.startswith("/")
            or self.api_path.endswith("/")
            or self.api_path == self.path[:-1]
        ):
            raise ValueError(
                f"api_path must start with '/', not end with one, and not be the path: {self.api_path!r}"
            )
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be None (the API is off) or a non-empty string")
        for name in ("api_max_body", "api_max_targets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.api_survey_timeout <= 0:
            raise ValueError("api_survey_timeout must be positive")
