"""The channel model: what a channel name, a session id and a subscription may be, and which
channels have history and presence.

No I/O here. A channel's **history** keeps its last ``size`` messages for ``ttl`` seconds after its last
message (both from the ``history`` setting). Each message in it has an **offset** (1, 2, 3 ... per
channel) and the stream an **epoch**: a random id the history gets when it starts (again), so a position
``(offset, epoch)`` names one message for good. A client that comes back with the position of the last
message it got is handed what followed it (:class:`~tidings.message.Recovery`), or told why that is
impossible: the history went (expired, or its store was lost: another epoch), or no longer holds the
message after it (trimmed). The same model as Centrifugo's history and recovery.

**Presence** is who is in a channel: per member, its session id and an info dict set by the app.

**Connection state recovery** (Socket.IO's, for the official clients: the ``connection_state_recovery``
setting) keeps what a socket whose transport dropped leaves behind, a :class:`KeptSession`, under a
private id (its *pid*), and a log of the packets sent meanwhile, each with an offset: a client that
comes back in time with both gets its socket back, and what was sent to it meanwhile.
"""

from __future__ import annotations

import re
import reprlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple, TypeAlias

import orjson

from tidings.message import Audience, Position, Subscriber

#: The default of the ``max_channel_length`` setting: the longest channel name, in characters.
MAX_CHANNEL_LENGTH = 200
#: What every session id is (see :meth:`Broker.new_session_id <tidings.brokers.Broker.new_session_id>`):
#: it is written into broker envelopes and Redis names, where a newline or a separator would let
#: whoever chose it rewrite the rest.
SESSION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The form of the session ids tidings hands out (:meth:`Broker.new_session_id
#: <tidings.brokers.Broker.new_session_id>`): a node id, a dot, a random part. In an emit's ``to=`` and
#: ``exclude=``, a string of this form names a socket, and any other string a channel.
SESSION_FORM = re.compile(r"[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]{20}")
#: What an emit's ``to=`` and ``exclude=`` take: a channel name, a session id, a socket, or a list,
#: tuple or set of them.
Targets: TypeAlias = "str | Subscriber | Iterable[str | Subscriber]"

#: Why a recovery was impossible (the ``reason`` of an unrecovered subscribe).
EPOCH_CHANGED = "epoch changed"
TRIMMED = "history trimmed"
NO_HISTORY = "no history for this channel"

#: What a client's ``pid`` may be (a kept session's private id: :func:`new_pid` makes them): anything
#: else is no kept session's, and is not looked up.
PID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_pid() -> str:
    """A new private id for a socket's kept session: a secret only its client learns (:data:`PID`)."""
    return secrets.token_urlsafe(15)


def check_channel_name(channel: Any, max_length: int) -> str | None:
    """Why ``channel`` is no acceptable channel name, or None."""
    if not isinstance(channel, str):
        return "channel must be a string"
    if not channel:
        return "channel must not be empty"
    if len(channel) > max_length:
        return f"channel name longer than {max_length} characters"
    return None


def check_session_id(session_id: Any) -> str | None:
    """Why ``session_id`` is no session id (:data:`SESSION_ID`), or None."""
    if isinstance(session_id, str) and SESSION_ID.fullmatch(session_id):
        return None
    return f"not a session id: {reprlib.repr(session_id)}"


def split_targets(targets: Targets, max_length: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The channels and the session ids ``targets`` names (see :data:`Targets`), each once, in order.

    A string of :data:`SESSION_FORM` is a session id, any other string a channel name; a socket (any
    subscriber) stands for its session id. ``ValueError`` for anything else, and for a channel name
    over the limits (as :func:`check_channel_name` says) or a socket's id that is no session id.
    """
    items = targets if isinstance(targets, (list, tuple, set, frozenset)) else (targets,)
    channels: dict[str, None] = {}
    session_ids: dict[str, None] = {}
    for item in items:
        if isinstance(item, str):
            if SESSION_FORM.fullmatch(item):
                session_ids[item] = None
            else:
                require(check_channel_name(item, max_length))
                channels[item] = None
        elif hasattr(item, "session_id"):
            require(check_session_id(item.session_id))
            session_ids[item.session_id] = None
        else:
            raise ValueError(f"not a channel, session id or socket: {reprlib.repr(item)}")
    return tuple(channels), tuple(session_ids)


def check_subscription(
    subscriber: Subscriber, channel: Any, max_channels: int, max_length: int
) -> str | None:
    """Why ``subscriber`` may not join ``channel`` (a bad name, too many channels), or None."""
    refusal = check_channel_name(channel, max_length)
    full = len(subscriber.subscriptions) >= max_channels
    if refusal is None and full and channel not in subscriber.subscriptions:
        refusal = f"too many channels (max_channels={max_channels})"
    return refusal


def require(refusal: str | None) -> None:
    """Raise ``ValueError(refusal)`` if there is one: what a check's refusal is for code that called
    tidings with a bad name (a client gets it in an ack instead)."""
    if refusal is not None:
        raise ValueError(refusal)


class HistoryRule(NamedTuple):
    size: int
    ttl: float


def recovery_from(since: Position | None, position: Position, first: int | None) -> str | None:
    """Why messages after ``since`` cannot all be had from a history at ``position`` whose oldest
    offset is ``first`` (None: it holds none), or None if they can."""
    if since is None or since == position:
        return None
    if since.epoch != position.epoch or since.offset > position.offset:
        return EPOCH_CHANGED
    if first is None or first > since.offset + 1:
        return TRIMMED
    return None


def newer(position: Position | None, than: Position | None) -> bool:
    """Whether a message at ``position`` comes after ``than`` (another epoch: a new history)."""
    if position is None or than is None:
        return True
    return position.epoch != than.epoch or position.offset > than.offset


def presence_list(entries: dict[str, Any]) -> list[dict[str, Any]]:
    """Presence as clients and ``tidings.presence`` get it: ``[{"session_id", "info"}, ...]``."""
    return [{"session_id": session_id, "info": info} for session_id, info in entries.items()]


class RecoveryRule(NamedTuple):
    """Connection state recovery: a socket's state is kept ``duration`` seconds after its transport
    dropped; the packet log holds at most ``max_packets``, none older than ``duration``."""

    duration: float
    max_packets: int


#: What a packet of the log was sent to: a channel, a group (a namespace), one session id, or the
#: audience of an emit to several (:class:`~tidings.message.Audience`, carried by the message).
Target = Literal["channel", "group", "session", "audience"]


@dataclass(frozen=True, slots=True)
class KeptSession:
    """What a socket whose transport dropped leaves behind for a client that comes back (Socket.IO's
    connection state recovery): its session id, namespace and channels, its ``context`` and
    ``presence_info``. Kept as JSON (:meth:`to_json`), in memory or in Redis alike."""

    session_id: str
    namespace: str
    channels: tuple[str, ...]
    context: dict[str, Any]
    presence_info: dict[str, Any]

    def to_json(self) -> bytes:
        """The session as JSON; ``TypeError`` if its context or presence info is not JSON-able."""
        return orjson.dumps(
            [self.session_id, self.namespace, self.channels, self.context, self.presence_info]
        )

    @classmethod
    def from_json(cls, data: bytes) -> KeptSession | None:
        """The session :meth:`to_json` wrote, or None for anything else."""
        try:
            session_id, namespace, channels, context, presence_info = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None
        if not (
            check_session_id(session_id) is None
            and isinstance(namespace, str)
            and isinstance(channels, list)
            and all(isinstance(channel, str) for channel in channels)
            and isinstance(context, dict)
            and isinstance(presence_info, dict)
        ):
            return None
        return cls(session_id, namespace, tuple(channels), context, presence_info)

    def addressed(
        self, target: Target, name: str, session_id: str | None, audience: Audience | None = None
    ) -> bool:
        """Whether a packet sent to ``target`` ``name`` (leaving out ``session_id``; a session's:
        to ``session_id``), less those its emit's ``audience`` leaves out, was this session's: as
        Socket.IO's adapter decides which missed packets a recovered socket gets, by the rooms it was
        in (its channels, its namespace, its own id)."""
        if audience is not None and (
            self.session_id in audience.exclude_sessions
            or not audience.exclude_channels.isdisjoint(self.channels)
        ):
            return False
        if target == "audience":
            return audience is not None and (
                self.session_id in audience.session_ids
                or not set(audience.channels).isdisjoint(self.channels)
            )
        if target == "session":
            return session_id == self.session_id
        if session_id == self.session_id:  # its own broadcast
            return False
        return name in self.channels if target == "channel" else name == self.namespace


class PresenceBatching(NamedTuple):
    """How the joins and leaves of a channel with presence reach its members (the settings of the
    same names): gathered ``interval`` seconds at least, and ``members / fanout_rate`` seconds for a
    big channel, into one notice that names ``max_diff`` members at most (else it gives the count)."""

    interval: float = 0.05
    fanout_rate: int = 20_000
    max_diff: int = 100

    def window(self, members: int) -> float:
        """Seconds a channel of ``members`` gathers its changes for before they go out."""
        return max(self.interval, members / self.fanout_rate)


DEFAULT_BATCHING = PresenceBatching()


class ChannelOptions:
    """Which channels have history (and how much) and presence: the ``history`` and ``presence``
    settings, first matching regex wins (``re.match``, as for handlers). Answers are cached.

    ``recovery`` is the ``connection_state_recovery`` setting (None: off): like the others, what
    publishers that serve nothing learn from the servers (the Redis broker stores these options).
    """

    def __init__(
        self,
        history: Iterable[tuple[str, int, float]] = (),
        presence: Iterable[str] = (),
        presence_timeout: float = 30.0,
        recovery: RecoveryRule | None = None,
        presence_batching: PresenceBatching = DEFAULT_BATCHING,
    ) -> None:
        #: Seconds after which the presence entries of a node that stopped answering are gone.
        self.presence_timeout = presence_timeout
        self.presence_batching = presence_batching
        self.recovery = recovery
        self.history_rules = [(re.compile(pattern), HistoryRule(size, ttl)) for pattern, size, ttl in history]
        self.presence_rules = [re.compile(pattern) for pattern in presence]
        #: False when no channel can have either: the hub and brokers skip every check then.
        self.any = bool(self.history_rules or self.presence_rules)
        self.history = lru_cache(maxsize=4096)(self._history)
        self.presence = lru_cache(maxsize=4096)(self._presence)

    def _history(self, channel: str) -> HistoryRule | None:
        for pattern, rule in self.history_rules:
            if pattern.match(channel):
                return rule
        return None

    def _presence(self, channel: str) -> bool:
        return any(pattern.match(channel) for pattern in self.presence_rules)

    def to_json(self) -> dict[str, Any]:
        """The options as JSON (what the Redis broker stores for publishers that serve nothing)."""
        return {
            "history": [[p.pattern, rule.size, rule.ttl] for p, rule in self.history_rules],
            "presence": [p.pattern for p in self.presence_rules],
            "recovery": list(self.recovery) if self.recovery is not None else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChannelOptions:
        history = [(str(p), int(size), float(ttl)) for p, size, ttl in data.get("history", [])]
        recovery = data.get("recovery")
        rule = RecoveryRule(float(recovery[0]), int(recovery[1])) if recovery else None
        return cls(history, [str(p) for p in data.get("presence", [])], recovery=rule)


def check_options(history: Sequence[Any], presence: Sequence[Any]) -> None:
    """Raise ``ValueError`` for a ``history`` or ``presence`` setting that is not well formed."""
    for rule in history:
        if not (isinstance(rule, Sequence) and len(rule) == 3 and isinstance(rule[0], str)):
            raise ValueError(f"history: each rule is (channel regex, size, ttl seconds), not {rule!r}")
        _, size, ttl = rule
        if type(size) is not int or size < 1 or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError(f"history: size must be an int >= 1 and ttl positive, in {rule!r}")
        re.compile(rule[0])
    for pattern in presence:
        if not isinstance(pattern, str):
            raise ValueError(f"presence: channel regexes are strings, not {pattern!r}")
        re.compile(pattern)
