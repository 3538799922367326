"""Presence notices: the joins and leaves of a channel, gathered for a moment, told in one message.

A notice per join or leave to every member makes the work of a channel grow with the square of its
size (3,000 joins: 4.5 million messages). :class:`PresenceNotices` gathers the changes of each channel
for a window (:meth:`~tidings.channels.PresenceBatching.window`: ``presence_batch_interval``, longer
for a big channel) and then hands the broker one ``presence`` notice for all of them
(:func:`~tidings.message.presence_notice`), with the channel's member count as the broker reads it
then. With the Redis broker that is one PUBLISH per channel per window for every node.

Runs on the event loop thread of the broker's hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tidings.errors import BrokerError
from tidings.message import presence_notice

if TYPE_CHECKING:
    from tidings.brokers.base import Broker

logger = logging.getLogger("tidings.broker")


class Changes:
    """A channel's joins and leaves of the current window, by session id (the last one of a session
    counts: a join then a leave is a leave, which a member that never saw the join can ignore)."""

    __slots__ = ("joined", "left", "timer")

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.joined: dict[str, Any] = {}
        self.left: dict[str, Any] = {}
        self.timer = timer


class PresenceNotices:
    """The presence changes of a broker's channels, sent as one notice per channel per window."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.pending: dict[str, Changes] = {}
        #: Each channel's member count at its last notice: how long its next window is.
        self.sizes: dict[str, int] = {}
        #: Counts asked for and not answered yet (the Redis broker reads them).
        self._counting: set[asyncio.Future[int]] = set()

    def joined(self, channel: str, session_id: str, info: Any) -> None:
        changes = self._changes(channel)
        changes.left.pop(session_id, None)
        changes.joined[session_id] = info

    def left(self, channel: str, session_id: str, info: Any) -> None:
        changes = self._changes(channel)
        changes.joined.pop(session_id, None)
        changes.left[session_id] = info

    def _changes(self, channel: str) -> Changes:
        changes = self.pending.get(channel)
        if changes is None:
            window = self.broker.options.presence_batching.window(self.sizes.get(channel, 0))
            timer = asyncio.get_running_loop().call_later(window, self._due, channel)
            changes = self.pending[channel] = Changes(timer)
        return changes

    def _due(self, channel: str) -> None:
        changes = self.pending.pop(channel)
        count = self.broker.presence_count(channel)
        if isinstance(count, asyncio.Future):
            self._counting.add(count)
            count.add_done_callback(lambda done: self._counted(channel, changes, done))
        else:
            self._send(channel, changes, count)

    def _counted(self, channel: str, changes: Changes, done: asyncio.Future[int]) -> None:
        self._counting.discard(done)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None and not isinstance(error, BrokerError):
            raise error
        self._send(channel, changes, None if error is not None else done.result())

    def _send(self, channel: str, changes: Changes, count: int | None) -> None:
        max_diff = self.broker.options.presence_batching.max_diff
        if count is None and len(changes.joined) + len(changes.left) > max_diff:
            # Neither the count nor the names: nothing to tell (Redis is out of reach; its members
            # ask again, with emit("presence"), once their node is back).
            logger.warning("broker: the presence count of %r cannot be read; its notice is dropped", channel)
            return
        self._remember(channel, count)
        notice = presence_notice(channel, changes.joined, changes.left, count, max_diff)
        try:
            self.broker.prepare(notice)
            self.broker.publish(notice)
        except BrokerError as error:
            logger.warning("broker: the presence notice of %r cannot be sent: %s", channel, error)

    def _remember(self, channel: str, count: int | None) -> None:
        """Keep the size of channels this node has members in (the others' go: the dict stays small)."""
        hub = self.broker.hub
        if count and hub is not None and channel in hub.channels:
            self.sizes[channel] = count
        else:
            self.sizes.pop(channel, None)

    async def flush(self) -> None:
        """Send every pending notice now, and wait for the counts they need (before the broker stops)."""
        for channel, changes in list(self.pending.items()):
            changes.timer.cancel()
            self._due(channel)
        if self._counting:
            await asyncio.gather(*self._counting, return_exceptions=True)
