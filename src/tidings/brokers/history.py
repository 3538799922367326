"""Per-channel history, recovery and presence: which channels have them, and the memory broker's stores.

No I/O here. A channel's **history** keeps its last ``size`` messages for ``ttl`` seconds after its last
message (both from the ``history`` setting). Each message in it has an **offset** (1, 2, 3 ... per
channel) and the stream an **epoch**: a random id the history gets when it starts (again), so a position
``(offset, epoch)`` names one message for good. A client that comes back with the position of the last
message it got is handed what followed it (:class:`Recovery`), or told why that is impossible: the
history went (expired, or its store was lost: another epoch), or no longer holds the message after it
(trimmed). The same model as Centrifugo's history and recovery.

**Presence** is who is in a channel: per member, its session id and an info dict set by the app.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from tidings.hub import Outgoing

#: Why a recovery was impossible (the ``reason`` of an unrecovered subscribe).
EPOCH_CHANGED = "epoch changed"
TRIMMED = "history trimmed"
NO_HISTORY = "no history for this channel"


class Position(NamedTuple):
    """Where a message is in its channel's history."""

    offset: int
    epoch: str

    def wire(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}

    @classmethod
    def parse(cls, value: Any) -> Position | None:
        """``{"offset": n, "epoch": e}`` from a client, or None if it is not one."""
        if not isinstance(value, dict):
            return None
        offset, epoch = value.get("offset"), value.get("epoch")
        if type(offset) is not int or offset < 0 or not isinstance(epoch, str) or len(epoch) > 64:
            return None
        return cls(offset, epoch)


class HistoryRule(NamedTuple):
    size: int
    ttl: float


@dataclass
class Recovery:
    """What a channel's history holds after a position: ``messages`` (in order) up to ``position``.

    ``reason`` is None when the messages are all that followed ``since``; otherwise recovery was
    impossible and ``messages`` is empty. ``position`` is the history's newest position either way: a
    live message after it is new to whoever got these.
    """

    position: Position
    messages: list[Outgoing] = field(default_factory=list)
    reason: str | None = None


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


class ChannelOptions:
    """Which channels have history (and how much) and presence: the ``history`` and ``presence``
    settings, first matching regex wins (``re.match``, as for handlers). Answers are cached."""

    def __init__(
        self,
        history: Iterable[tuple[str, int, float]] = (),
        presence: Iterable[str] = (),
        presence_timeout: float = 30.0,
    ) -> None:
        #: Seconds after which the presence entries of a node that stopped answering are gone.
        self.presence_timeout = presence_timeout
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
        }

    @classmethod
    def from_json(cls, data: Any) -> ChannelOptions:
        history = [(str(p), int(size), float(ttl)) for p, size, ttl in data.get("history", [])]
        return cls(history, [str(p) for p in data.get("presence", [])])


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


class MemoryStream:
    """One channel's history in memory: a ring buffer of (offset, message), with an epoch."""

    __slots__ = ("entries", "epoch", "expires", "offset")

    def __init__(self, size: int) -> None:
        self.entries: deque[tuple[int, Outgoing]] = deque(maxlen=size)
        self.epoch = secrets.token_urlsafe(6)
        self.offset = 0
        self.expires = 0.0


class MemoryHistory:
    """The memory broker's histories, by channel: same semantics as the Redis streams."""

    def __init__(self) -> None:
        self.streams: dict[str, MemoryStream] = {}

    def _stream(self, channel: str, rule: HistoryRule, now: float) -> MemoryStream:
        stream = self.streams.get(channel)
        if stream is None or stream.expires <= now or stream.entries.maxlen != rule.size:
            self._sweep(now)
            stream = self.streams[channel] = MemoryStream(rule.size)
            stream.expires = now + rule.ttl
        return stream

    def _sweep(self, now: float) -> None:
        """Forget expired histories (when a new one starts: the cost is spread over those)."""
        if len(self.streams) > 64:
            for name in [name for name, stream in self.streams.items() if stream.expires <= now]:
                del self.streams[name]

    def append(self, outgoing: Outgoing, rule: HistoryRule) -> Position:
        assert outgoing.channel is not None
        now = time.monotonic()
        stream = self._stream(outgoing.channel, rule, now)
        stream.offset += 1
        stream.entries.append((stream.offset, outgoing))
        stream.expires = now + rule.ttl
        return Position(stream.offset, stream.epoch)

    def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        stream = self._stream(channel, rule, time.monotonic())
        position = Position(stream.offset, stream.epoch)
        first = stream.entries[0][0] if stream.entries else None
        reason = recovery_from(since, position, first)
        if since is None or reason is not None:
            return Recovery(position, reason=reason)
        return Recovery(position, [o for offset, o in stream.entries if offset > since.offset])


def presence_list(entries: dict[str, Any]) -> list[dict[str, Any]]:
    """Presence as clients and ``tidings.presence`` get it: ``[{"session_id", "info"}, ...]``."""
    return [{"session_id": session_id, "info": info} for session_id, info in entries.items()]
