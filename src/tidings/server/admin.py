"""The server side of the Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5): its ``/admin`` namespace.

The UI connects to the admin namespace as an ordinary Socket.IO client and is sent ``config``,
``all_sockets`` and every ``stats_interval`` seconds ``server_stats``; while it is connected it hears
``socket_connected``, ``socket_disconnected``, ``room_joined``, ``room_left`` and ``event_received``.
It sends the actions ``join``, ``leave``, ``_disconnect`` and ``emit``, each for the sockets of a
namespace, all of them or those of one room. What the package's own ``instrument(io, opts)`` does
(its ``dist/index.js``), with tidings' words: a socket's rooms are its own id and its channels.

None of this runs unless a :class:`tidings.Server` is given ``admin_ui=AdminUI(...)``: the server's
hooks test one attribute for None.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import socket as host
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tidings.api.socket import Socket
from tidings.message import Subscriber
from tidings.server.limits import TokenBuckets, address_key

if TYPE_CHECKING:
    from tidings.server.engineio import Engine
    from tidings.server.socketio import SocketIO

logger = logging.getLogger("tidings.admin")

#: What the UI may do with the sockets it shows (its ``config`` event): the actions, the dashboard's
#: charts (AGGREGATED_EVENTS) and the events page (ALL_EVENTS).
ACTIONS = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]
VIEWS = ["AGGREGATED_EVENTS", "ALL_EVENTS"]


@dataclass(frozen=True)
class AdminUI:
    """The Socket.IO Admin UI for a :class:`tidings.Server`: ``Server(admin_ui=AdminUI(...))``.

    Args:
        auth: ``(username, bcrypt_hash)``: the UI's login, the password as a bcrypt hash (as the
            Node package takes it; ``tidings.server.admin.hash_password("secret")`` makes one).
            ``False`` turns the login off: anyone who reaches the server can then see every socket
            and disconnect it; there is no default.
        namespace: the namespace the UI connects to (its "Admin namespace" option).
        read_only: the UI shows, and its join, leave, disconnect and emit actions are refused.
        ui_files: the folder of the UI's built files (``node_modules/@socket.io/admin-ui/ui/dist``),
            served at ``ui_path`` by the server itself; None: not served.
        ui_path: where the UI's page is served.
        stats_interval: seconds between two ``server_stats``, while a UI is connected.
        max_sessions: how many logins the server remembers (the UI reconnects with the session id
            it was given instead of the password); past it, the oldest is forgotten and its UI asks
            for the password again. Each costs ~100 bytes.
        server_id: the name the UI shows for this server (several servers: one line each); default
            the host name and the process id.
        login_attempts_per_minute: password logins one client address may try in a minute (at
            most that many at once, then one every ``60 / login_attempts_per_minute`` s); past it
            the login is refused without checking the password. Each check costs bcrypt's work
            (~0.1 s of a core).
        max_login_checks: passwords checked at the same time, whatever the addresses; a login past
            it is refused ("busy"): many addresses guessing at once cannot take the server's cores.
    """

    auth: tuple[str, str] | Literal[False]
    namespace: str = "/admin"
    read_only: bool = False
    ui_files: str | Path | None = None
    ui_path: str = "/admin-ui/"
    stats_interval: float = 2.0
    max_sessions: int = 100
    server_id: str | None = None
    login_attempts_per_minute: int = 10
    max_login_checks: int = 2

    def __post_init__(self) -> None:
        if self.auth is not False:
            if not (isinstance(self.auth, tuple) and len(self.auth) == 2):
                raise ValueError("auth: give (username, bcrypt hash), or False to turn the login off")
            bcrypt_module()  # an ImportError now, not at the first login
            if not _is_bcrypt_hash(self.auth[1]):
                raise ValueError("auth: the password must be a bcrypt hash (see hash_password)")
        if not self.namespace.startswith("/"):
            raise ValueError("namespace must start with '/'")
        if not (self.ui_path.startswith("/") and self.ui_path.endswith("/")):
            raise ValueError("ui_path must start and end with '/'")
        if (
            self.stats_interval <= 0
            or min(self.max_sessions, self.login_attempts_per_minute, self.max_login_checks) < 1
        ):
            raise ValueError(
                "stats_interval, max_sessions, login_attempts_per_minute and max_login_checks "
                "must be positive"
            )


def bcrypt_module() -> Any:
    try:
        import bcrypt
    except ImportError:
        raise ImportError('the Admin UI login needs bcrypt: pip install "tidings[admin]"') from None
    return bcrypt


def hash_password(password: str) -> str:
    """A bcrypt hash of ``password``, for :attr:`AdminUI.auth`."""
    bcrypt = bcrypt_module()
    hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    return hashed.decode()


def _is_bcrypt_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 60 and value[:4] in ("$2a$", "$2b$", "$2y$")


def _now() -> str:
    """A time as the Node package's JSON has it (``Date.toJSON``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Admin:
    """The admin namespace of one server: the UI's sockets, their logins, and what they are told.

    Runs on the event loop thread, called by :class:`~tidings.server.socketio.SocketIO` and, for
    channels, by the hub (it is the hub's ``observer``).
    """

    def __init__(self, options: AdminUI, socketio: SocketIO, engine: Engine) -> None:
        self.options = options
        self.namespace = options.namespace
        self.io = socketio
        self.engine = engine
        self.server_id = options.server_id or f"{host.gethostname()}#{os.getpid()}"
        self.features = ([] if options.read_only else ACTIONS) + VIEWS
        self.started = time.monotonic()
        self.sessions: dict[str, None] = {}  # the logins given out, oldest first
        self.viewers: dict[Socket, None] = {}  # the UI's sockets
        self.since: dict[str, datetime] = {}  # when each socket connected, by id
        # The dashboard's counts, by (second, type): connections and disconnections.
        self.counts: dict[tuple[int, str], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Password logins: a bucket of attempts per client address, and the checks running now.
        per_minute = options.login_attempts_per_minute
        self.login_attempts = TokenBuckets(per_minute / 60, per_minute)
        self.login_checks = 0

    def owns(self, namespace: str) -> bool:
        return namespace == self.namespace

    # -- login ---------------------------------------------------------------------------------------

    async def login(self, socket: Socket) -> str | None:
        """Check the UI's CONNECT payload (``{username, password}`` or ``{sessionId}``); None if it
        may connect, else the refusal. A password is checked in a thread (bcrypt takes ~0.2 s)."""
        auth = self.options.auth
        if auth is False:
            return None
        given = socket.auth if isinstance(socket.auth, dict) else {}
        session_id = given.get("sessionId")
        if isinstance(session_id, str) and session_id in self.sessions:
            return None
        username, password = given.get("username"), given.get("password")
        if not (isinstance(username, str) and isinstance(password, str)):
            return "invalid credentials"
        client = socket.request.client
        if not self.login_attempts.take(address_key(client[0] if client else "")):
            return "too many login attempts"
        if self.login_checks >= self.options.max_login_checks:
            return "busy: too many logins at once"
        self.login_checks += 1
        try:
            loop = asyncio.get_running_loop()
            matches = await loop.run_in_executor(None, _password_matches, password, auth[1])
        finally:
            self.login_checks -= 1
        if not (hmac.compare_digest(username.encode(), auth[0].encode()) and matches):
            return "invalid credentials"
        session_id = secrets.token_hex(16)
        self.sessions[session_id] = None
        if len(self.sessions) > self.options.max_sessions:
            del self.sessions[next(iter(self.sessions))]
        socket.emit("session", session_id)  # sent after the CONNECT reply
        return None

    # -- sockets come and go -------------------------------------------------------------------------

    def connected(self, socket: Socket) -> None:
        """A socket of any namespace was accepted."""
        self.since[socket.session_id] = datetime.now(timezone.utc)
        if socket.namespace == self.namespace:
            self.viewers[socket] = None
        if self.viewers:
            self._tell("socket_connected", self.serialize(socket), _now())
        if socket.namespace != self.namespace:
            return
        socket.emit("config", {"supportedFeatures": self.features})
        socket.emit("all_sockets", [self.serialize(each) for each in self._sockets()])
        socket.emit("server_stats", self._stats())
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.options.stats_interval, self._tick)

    def disconnected(self, socket: Socket, reason: str) -> None:
        """A connected socket left its namespace."""
        self.since.pop(socket.session_id, None)
        self.viewers.pop(socket, None)
        if not self.viewers and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.viewers:
            self._tell("socket_disconnected", socket.namespace, socket.session_id, reason, _now())

    def session_opened(self) -> None:
        self._count("rawConnection")

    def session_closed(self) -> None:
        self._count("rawDisconnection")

    # -- the hub's observer: channels are the UI's rooms -------------------------------------------

    def joined(self, subscriber: Subscriber, channel: str) -> None:
        if self.viewers and isinstance(subscriber, Socket):
            self._tell("room_joined", subscriber.namespace, channel, subscriber.session_id, _now())

    def left(self, subscriber: Subscriber, channel: str) -> None:
        if self.viewers and isinstance(subscriber, Socket):
            self._tell("room_left", subscriber.namespace, channel, subscriber.session_id, _now())

    def event_received(self, socket: Socket, data: list[Any]) -> None:
        """A client's event, as its handlers get it: ``[event, *args]``."""
        if self.viewers and socket.namespace != self.namespace:
            self._tell("event_received", socket.namespace, socket.session_id, data, _now())

    # -- the UI's actions --------------------------------------------------------------------------

    def act(self, data: list[Any]) -> None:
        """One event of the UI: ``join``/``leave`` (namespace, room, filter), ``_disconnect``
        (namespace, close, filter), ``emit`` (namespace, filter, event, *args). The filter is a room
        (a socket id or a channel) or null: every socket of the namespace. Malformed: ignored."""
        if self.options.read_only or len(data) < 3:
            return
        action, namespace, *args = data
        if not isinstance(namespace, str):
            return
        if action == "join" and isinstance(args[0], str):
            for socket in self._in(namespace, _room_filter(args[1:])):
                refusal = self.io.subscribe(socket, args[0])
                if refusal is not None:
                    logger.info("admin: %s cannot join %r: %s", socket.session_id, args[0], refusal)
        elif action == "leave" and isinstance(args[0], str):
            for socket in self._in(namespace, _room_filter(args[1:])):
                self.io.hub.unsubscribe(socket, args[0])
        elif action == "_disconnect":
            close = args[0] is True
            for socket in self._in(namespace, _room_filter(args[1:])):
                if close:  # the whole connection, as Socket.IO's disconnect(true)
                    socket.connection.session.close("forced close")  # type: ignore[attr-defined]
                else:
                    self.io.disconnect(socket, "server namespace disconnect", True)
        elif action == "emit" and len(args) >= 2 and isinstance(args[1], str):
            room = args[0] if isinstance(args[0], str) else None
            try:
                self.io.emit(args[1], tuple(args[2:]), room, namespace)
            except (TypeError, ValueError) as error:
                logger.info("admin: emit refused: %s", error)

    def _in(self, namespace: str, room: str | None) -> list[Socket]:
        """The connected sockets of ``namespace`` on this node, all or those in ``room``."""
        members = self.io.hub.groups.get(namespace, {}).values()
        return [
            member
            for member in list(members)
            if isinstance(member, Socket)
            and member.connected
            and (room is None or room == member.session_id or room in member.subscriptions)
        ]

    # -- what the UI is told -------------------------------------------------------------------------

    def serialize(self, socket: Socket) -> dict[str, Any]:
        """A socket as the UI shows it (the package's ``serialize``)."""
        request = socket.request
        headers = dict(request.headers.items())
        session = socket.connection.session
        since = self.since.get(socket.session_id) or datetime.now(timezone.utc)
        client = request.client
        return {
            "id": socket.session_id,
            "clientId": getattr(session, "sid", ""),
            "transport": getattr(session, "transport", ""),
            "nsp": socket.namespace,
            "data": {},
            "handshake": {
                "address": headers.get("x-forwarded-for") or (client[0] if client else ""),
                "headers": headers,
                "query": request.query,
                "issued": int(since.timestamp() * 1000),
                "secure": request.scope.get("scheme") in ("https", "wss"),
                "time": since.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (UTC)"),
                "url": request.path + ("?" + request.query_string if request.query_string else ""),
                "xdomain": "origin" in headers,
            },
            "rooms": [socket.session_id, *socket.subscriptions],
        }

    def _sockets(self) -> Iterable[Socket]:
        for subscriber in list(self.io.hub.sessions.values()):
            if isinstance(subscriber, Socket) and subscriber.connected:
                yield subscriber

    def _stats(self) -> dict[str, Any]:
        sessions = self.engine.sessions.values()
        counts, self.counts = self.counts, {}
        sockets = {
            name: sum(1 for member in members.values() if isinstance(member, Socket))
            for name, members in self.io.hub.groups.items()
        }
        return {
            "serverId": self.server_id,
            "hostname": host.gethostname(),
            "pid": os.getpid(),
            "uptime": time.monotonic() - self.started,
            "clientsCount": len(sessions),
            "pollingClientsCount": sum(1 for session in sessions if session.transport == "polling"),
            "aggregatedEvents": [
                {"timestamp": second * 1000, "type": kind, "count": count}
                for (second, kind), count in counts.items()
            ],
            "namespaces": [{"name": name, "socketsCount": n} for name, n in sockets.items() if n],
        }

    def _tick(self) -> None:
        self._timer = None
        if self.viewers:
            self._tell("server_stats", self._stats())
            self._timer = asyncio.get_running_loop().call_later(self.options.stats_interval, self._tick)

    def _count(self, kind: str) -> None:
        if self.viewers:  # else no one reads them
            key = (int(time.time()), kind)
            self.counts[key] = self.counts.get(key, 0) + 1

    def _tell(self, event: str, *args: Any) -> None:
        """``event`` to every UI connected to this node (one at least), encoded once."""
        viewer = next(iter(self.viewers))
        try:
            packets = viewer._event(event, args)
        except TypeError as error:  # an event_received whose arguments JSON cannot hold
            logger.debug("admin: %s not sent: %s", event, error)
            return
        for each in list(self.viewers):
            each.connection.session.send_many(packets)


def _room_filter(args: list[Any]) -> str | None:
    return args[0] if args and isinstance(args[0], str) else None


def _password_matches(password: str, hashed: str) -> bool:
    try:
        matches: bool = bcrypt_module().checkpw(password.encode(), hashed.encode())
    except ValueError:  # bcrypt 5 refuses a password over 72 bytes
        return False
    return matches
