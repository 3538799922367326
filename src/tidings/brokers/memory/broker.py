"""The memory broker, tidings' default: one process, messages handed to the hub as objects.

Nothing is encoded for the trip and nothing leaves the process, so a broadcast costs what the hub's
fan-out costs; the counts are exact and immediate: how many sockets a message was handed to.
"""

from __future__ import annotations

from typing import Any

from tidings.brokers.base import Broker, LocalHub
from tidings.brokers.memory.history import MemoryHistory
from tidings.channels import HistoryRule, presence_list
from tidings.message import Outgoing, Position, Recovery, Subscriber


class MemoryBroker(Broker):
    """Delivers straight to its own hub: what a single-process server needs.

    Channels with history keep it in a ring buffer per channel; presence is a dict per channel.
    """

    def __init__(self) -> None:
        super().__init__()
        self._history = MemoryHistory()
        self._presence: dict[str, dict[str, Any]] = {}

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
                outgoing = outgoing.__class__(outgoing.message, outgoing.channel)
                outgoing.position = self._history.append(outgoing, rule)
        return self._hub().publish(outgoing, exclude)

    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> int:
        return self._hub().broadcast(outgoing, group, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int:
        return self._hub().send(outgoing, session_id)

    def emit(self, outgoing: Outgoing) -> int:
        return self._hub().emit(outgoing)

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        return self._history.recover(channel, rule, since)

    def presence_join(self, channel: str, session_id: str, info: Any) -> None:
        self._presence.setdefault(channel, {})[session_id] = info

    def presence_leave(self, channel: str, session_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(session_id, None)
            if not members:
                del self._presence[channel]

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        return presence_list(self._presence.get(channel, {}))

    def __repr__(self) -> str:
        return "<MemoryBroker>"
