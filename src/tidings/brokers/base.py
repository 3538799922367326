"""The broker interface: how the hubs of every server process (node) hand each other messages.

A hub routes every channel publish, namespace broadcast, session send and emit to several targets
through its broker; the broker hands it, on every node that should see it, back to that node's hub for
local fan-out (:meth:`Hub.publish`, :meth:`Hub.broadcast`, :meth:`Hub.send`, :meth:`Hub.emit`). The hub
tells its broker when it gets its first member of a channel or group and when the last one leaves, so a
broker can take only the traffic its node has sockets for.

Everything here runs on the event loop thread of the hub, except :meth:`Broker.prepare`, which runs in
the caller's thread so that encoding costs (and ``TypeError`` for a value JSON cannot hold) stay there.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, TypeAlias

from tidings.brokers.notices import PresenceNotices
from tidings.channels import NO_HISTORY, ChannelOptions, HistoryRule, KeptSession
from tidings.message import Outgoing, Position, Recovery, Subscriber
from tidings.stats import Histogram

if TYPE_CHECKING:
    from tidings.settings import Settings

#: What a hub groups its members by: channels, and groups (Socket.IO namespaces, WebSocket paths).
Kind: TypeAlias = Literal["channel", "group"]
#: How many took a message: known now (an int), or once the broker has an answer (a future).
Count: TypeAlias = "int | asyncio.Future[int]"


class Buffered(int):
    """The count of a message that waits in the broker's buffer while its server (Redis) cannot be
    reached: 0, as nobody took it yet, and no :class:`~tidings.errors.NoSocket`. It goes out, in
    order, when the server answers again (see the ``broker_buffer`` setting)."""

    def __new__(cls) -> Buffered:
        return super().__new__(cls, 0)


class Missed(NamedTuple):
    """What a recovering socket missed: ``messages`` in order, read from the packet log up to the
    offset ``last`` (a live message newer than it, :meth:`Broker.newer`, is not among them)."""

    messages: list[Outgoing]
    last: str


class LocalHub(Protocol):
    """What a broker hands messages to: the hub of its own node (:class:`tidings.hub.Hub`), which
    fans them out to its local members."""

    options: ChannelOptions
    #: The local members by session id, and by channel (members as dict keys, in join order).
    sessions: dict[str, Subscriber]
    channels: dict[str, dict[Subscriber, None]]

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> int: ...

    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> int: ...

    def send(self, outgoing: Outgoing, session_id: str) -> int: ...

    def emit(self, outgoing: Outgoing) -> int: ...

    def channel_counts(self) -> dict[str, int]: ...

    def disconnect(self, session_id: str) -> int: ...


class Broker(abc.ABC):
    """Carries the messages of a hub to every hub that shares the broker, its own included."""

    #: False when messages stay objects in this process (the memory broker); True when they are
    #: encoded (:meth:`prepare`) and travel through a server such as Redis.
    remote = False

    @property
    def sheds(self) -> int:
        """Times this node fell so far behind that it dropped what the broker's server held for it
        (the Redis broker: ``redis_max_backlog``); read by the metrics. 0 for a broker with no server."""
        return 0

    @property
    def backlog(self) -> int:
        """Bytes the broker's server held for this node, unread, at the last look; read by the
        metrics. 0 for a broker with no server."""
        return 0

    def __init__(self) -> None:
        self.hub: LocalHub | None = None
        #: Read by the metrics at a scrape: how often the broker got its server back after losing
        #: it, and how long its publishes took to be answered (None: a broker with no server).
        self.reconnects = 0
        self.publish_seconds: Histogram | None = None
        #: This node's id: the first part of every session id it hands out.
        self.node_id = secrets.token_urlsafe(6)
        #: Which channels have history and presence: the hub's (its server's settings).
        self.options = ChannelOptions()
        #: The joins and leaves of presence channels on their way to the members, a window at a time.
        self.notices = PresenceNotices(self)

    def attach(self, hub: LocalHub) -> None:
        """Deliver to ``hub``; a broker serves one hub (one server) of its process."""
        if self.hub is not None and self.hub is not hub:
            raise ValueError(f"{self!r} already serves another server; give each its own broker")
        self.hub = hub
        self.options = hub.options

    def configure(self, settings: Settings) -> None:  # noqa: B027 - optional hook
        """Take what concerns this broker of its server's ``settings`` (before it starts)."""

    @property
    def reach(self) -> Hashable:
        """Equal for brokers that reach the same sockets: a message goes through only one of them."""
        return id(self)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (at server start); raises :class:`BrokerError`, naming the broker, if it cannot."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect (at server shutdown)."""

    def new_session_id(self) -> str:
        """A new session id: what :meth:`send` can route to the node that holds the session.

        ``<node id>.<random>`` (:data:`tidings.channels.SESSION_FORM`): a string of that form in an
        emit's ``to=`` names a socket, any other string a channel.
        """
        return f"{self.node_id}.{secrets.token_urlsafe(15)}"

    def prepare(self, outgoing: Outgoing) -> None:  # noqa: B027 - optional hook, nothing to do here
        """Encode what the broker carries of ``outgoing``, in the caller's thread (remote brokers)."""

    # -- local membership: the hub calls these (event loop thread) ---------------------------------

    def first_joined(self, kind: Kind, name: str) -> None:  # noqa: B027 - optional hook
        """The hub's first member of channel or group ``name`` joined: start taking its messages."""

    def last_left(self, kind: Kind, name: str) -> None:  # noqa: B027 - optional hook
        """The hub's last member of ``name`` left: stop taking its messages."""

    async def ready(self) -> None:  # noqa: B027 - optional hook
        """Return once the subscriptions asked for so far are in effect everywhere."""

    async def lag(self) -> float | None:
        """Seconds a message this node publishes now takes to come back to it through the broker's
        server (its queue, the server, what the node has yet to read before it); None for a broker
        with no server, or if it does not come back in time."""
        return None

    # -- routing (event loop thread) ---------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> Count:
        """Hand ``outgoing`` to every member of its channel, on every node, but ``exclude``."""

    @abc.abstractmethod
    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> Count:
        """Hand ``outgoing`` to every member of ``group``, on every node, but ``exclude``."""

    @abc.abstractmethod
    def send(self, outgoing: Outgoing, session_id: str) -> Count:
        """Hand ``outgoing`` to the one subscriber ``session_id``, wherever it is connected."""

    @abc.abstractmethod
    def emit(self, outgoing: Outgoing) -> Count:
        """Hand ``outgoing`` to its audience (:class:`~tidings.message.Audience`), on every node: the
        members of its channels and the subscribers of its session ids, each once."""

    # -- history and presence (event loop thread) ----------------------------------------------------

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        """The messages of ``channel``'s history after ``since`` (None: none, only the position).

        Raises :class:`BrokerError` if the history cannot be read.
        """
        return Recovery(Position(0, ""), reason=NO_HISTORY)

    def presence_join(self, channel: str, session_id: str, info: Any) -> None:  # noqa: B027 - optional hook
        """``session_id`` entered ``channel`` (a channel with presence), with ``info`` (JSON-able)."""

    def presence_leave(self, channel: str, session_id: str) -> None:  # noqa: B027 - optional hook
        """``session_id`` left ``channel``."""

    def presence_count(self, channel: str) -> Count:
        """How many are in ``channel``, on every node (a future: raises :class:`BrokerError`)."""
        return 0

    async def presence(self, channel: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Who is in ``channel``, on every node: ``[{"session_id": ..., "info": {...}}, ...]``; the
        first ``limit`` only (None: all), read at a cost that grows with ``limit``, not the channel."""
        return []

    async def history(self, channel: str, rule: HistoryRule) -> tuple[Position, list[tuple[int, Outgoing]]]:
        """What ``channel``'s history holds now: its position, and its messages with their offsets,
        oldest first. Raises :class:`BrokerError` if it cannot be read."""
        return Position(0, ""), []

    # -- questions to every node (event loop thread): the HTTP server API's ---------------------------

    async def channel_counts(self, timeout: float) -> dict[str, int]:
        """The channels with members on any node, and how many members each has on all of them
        together; a node that has not answered within ``timeout`` seconds is left out."""
        return self.hub.channel_counts() if self.hub is not None else {}

    async def disconnect(self, session_id: str, timeout: float) -> int:
        """Disconnect the socket ``session_id``, on whichever node holds it: how many were (0 or 1)."""
        return self.hub.disconnect(session_id) if self.hub is not None else 0

    # -- connection state recovery (event loop thread): the ``connection_state_recovery`` setting ----

    def keep_session(self, pid: str, session: bytes) -> None:  # noqa: B027 - optional hook
        """Keep ``session`` (:meth:`KeptSession.to_json`) under ``pid`` for ``options.recovery``'s
        duration, for a client that comes back."""

    async def take_session(self, pid: str, offset: str) -> KeptSession | None:
        """The session kept under ``pid``, if its duration has not passed and the packet log still
        holds ``offset`` (the last packet its client got); it is kept no longer. Else None, as for
        any ``pid`` and ``offset`` a client makes up. Raises :class:`BrokerError`."""
        return None

    async def missed(self, session: KeptSession, offset: str) -> Missed | None:
        """The packets of the log after ``offset`` that were ``session``'s, in order; None if the log
        no longer holds ``offset``. Raises :class:`BrokerError`."""
        return None

    def newer(self, offset: str, than: str) -> bool:
        """Whether the packet at log offset ``offset`` was logged after the one at ``than``."""
        return True

    def adopt(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """A recovered socket with ``session_id`` is served here now: route its sends here too."""

    def release(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """The recovered socket with ``session_id`` is served here no longer."""
