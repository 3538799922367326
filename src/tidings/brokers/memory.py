"""The memory broker, tidings' default: one process, messages handed to the hub as objects.

Nothing is encoded for the trip and nothing leaves the process, so a broadcast costs what the hub's
fan-out costs; the counts are exact and immediate: how many sockets a message was handed to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.brokers.base import Broker

if TYPE_CHECKING:
    from tidings.hub import Hub, Outgoing, Subscriber


class MemoryBroker(Broker):
    """Delivers straight to its own hub: what a single-process server needs."""

    def _hub(self) -> Hub:
        assert self.hub is not None, "the broker is not attached to a hub"
        return self.hub

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> int:
        return self._hub().publish(outgoing, exclude)

    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> int:
        return self._hub().broadcast(outgoing, group, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int:
        return self._hub().send(outgoing, session_id)

    def __repr__(self) -> str:
        return "<MemoryBroker>"
