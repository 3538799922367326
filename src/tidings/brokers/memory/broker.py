"""The memory broker, tidings' default: one process, messages handed to the hub as objects.

Nothing is encoded for the trip and nothing leaves the process, so a broadcast costs what the hub's
fan-out costs; the counts are exact and immediate: how many sockets a message was handed to.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from tidings.brokers.base import Broker, LocalHub, Missed
from tidings.brokers.memory.history import MemoryHistory
from tidings.brokers.memory.sessions import MemorySessions, new_offset
from tidings.channels import HistoryRule, KeptSession, Target, presence_list
from tidings.message import Outgoing, Position, Recovery, Subscriber

if TYPE_CHECKING:
    from tidings.settings import Settings


class MemoryBroker(Broker):
    """Delivers straight to its own hub: what a single-process server needs.

    Channels with history keep it in a ring buffer per channel; presence is a dict per channel; with
    connection state recovery, kept sessions and the packet log are :class:`MemorySessions`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._history = MemoryHistory()
        self._presence: dict[str, dict[str, Any]] = {}
        self._sessions: MemorySessions | None = None

    def configure(self, settings: Settings) -> None:
        """Keep sessions and a packet log if ``connection_state_recovery`` is on."""
        rule = settings.recovery
        self._sessions = MemorySessions(rule, settings.max_sessions) if rule is not None else None

    def prepare(self, outgoing: Outgoing) -> None:
        """Give ``outgoing`` its log offset (connection state recovery), before it is encoded."""
        if self._sessions is not None and outgoing.log_offset is None:
            outgoing.log_offset = new_offset()

    def _hub(self) -> LocalHub:
        assert self.hub is not None, "the broker is not attached to a hub"
        return self.hub

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> int:
        if self.options.any and outgoing.event is None:
            assert outgoing.channel is not None
            rule = self.options.history(outgoing.channel)
            if rule is not None:
                # A message of its own: encoded again, with its position (and a message sent through
                # the brokers of two servers gets a position in each).
                stored = outgoing.__class__(outgoing.message, outgoing.channel)
                stored.position = self._history.append(stored, rule)
                live = stored
                if outgoing.log_offset is not None:
                    # Live, with its log offset; the history's replays, out of the log's order, without.
                    live = outgoing.__class__(outgoing.message, outgoing.channel)
                    live.position, live.log_offset = stored.position, outgoing.log_offset
                outgoing = live
        if self._sessions is not None:
            _log(self._sessions, outgoing, "channel", outgoing.channel, exclude)
        return self._hub().publish(outgoing, exclude)

    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> int:
        if self._sessions is not None:
            _log(self._sessions, outgoing, "group", group, exclude)
        return self._hub().broadcast(outgoing, group, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int:
        if self._sessions is not None:
            _log(self._sessions, outgoing, "session", session_id, None)
        return self._hub().send(outgoing, session_id)

    def emit(self, outgoing: Outgoing) -> int:
        if self._sessions is not None:
            _log(self._sessions, outgoing, "audience", "", None)
        return self._hub().emit(outgoing)

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        return self._history.recover(channel, rule, since)

    async def history(self, channel: str, rule: HistoryRule) -> tuple[Position, list[tuple[int, Outgoing]]]:
        return self._history.contents(channel, rule)

    def presence_join(self, channel: str, session_id: str, info: Any) -> None:
        self._presence.setdefault(channel, {})[session_id] = info

    def presence_leave(self, channel: str, session_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(session_id, None)
            if not members:
                del self._presence[channel]

    def presence_count(self, channel: str) -> int:
        return len(self._presence.get(channel, ()))

    async def presence(self, channel: str, limit: int | None = None) -> list[dict[str, Any]]:
        members = self._presence.get(channel, {})
        return presence_list(members if limit is None else dict(itertools.islice(members.items(), limit)))

    def keep_session(self, pid: str, session: bytes) -> None:
        if self._sessions is not None:
            self._sessions.keep(pid, session)

    async def take_session(self, pid: str, offset: str) -> KeptSession | None:
        return self._sessions.take(pid, offset) if self._sessions is not None else None

    async def missed(self, session: KeptSession, offset: str) -> Missed | None:
        found = self._sessions.missed(session, offset) if self._sessions is not None else None
        return Missed(*found) if found is not None else None

    def newer(self, offset: str, than: str) -> bool:
        return self._sessions is None or self._sessions.newer(offset, than)

    def __repr__(self) -> str:
        return "<MemoryBroker>"


def _log(
    sessions: MemorySessions, outgoing: Outgoing, target: Target, name: str | None, exclude: Subscriber | None
) -> None:
    """Log ``outgoing`` if it has an offset (one sent without :meth:`MemoryBroker.prepare` has none)."""
    if outgoing.log_offset is not None and name is not None:
        session_id = name if target == "session" else exclude.session_id if exclude is not None else None
        sessions.append(outgoing, target, name, session_id)
