"""The memory broker's histories: a ring buffer per channel, with the same semantics as the Redis
streams (see :mod:`tidings.channels` for the model)."""

from __future__ import annotations

import secrets
import time
from collections import deque

from tidings.channels import HistoryRule, recovery_from
from tidings.message import Outgoing, Position, Recovery


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

    def contents(self, channel: str, rule: HistoryRule) -> tuple[Position, list[tuple[int, Outgoing]]]:
        """The history's position and every message it holds, with its offset."""
        stream = self._stream(channel, rule, time.monotonic())
        return Position(stream.offset, stream.epoch), list(stream.entries)
