"""The Redis broker's histories (channels the ``history`` setting names), in Redis Streams.

Under the name prefix:

- ``<prefix>history:<channel>``: the stream, ``XADD ... MAXLEN ~ size``; an entry's id is
  ``<offset>-0`` and its field ``d`` the envelope as it was published (its position line first).
- ``<prefix>meta:<channel>``: a hash of ``epoch`` (random, chosen when the history starts) and
  ``offset`` (the last one given). Both keys expire ``ttl`` seconds after the last message.

One script (:data:`~tidings.brokers.redis.scripts.PUBLISH_HISTORY`) gives the offset, appends and
PUBLISHes, so the order of offsets is the order of delivery. When the meta hash is gone (expired, or
Redis lost it), or was written on another master (a Sentinel failover: its ``master`` field is not
the replication id in ``<prefix>master``; on a Redis Cluster, not the replication id of the master the
script runs on), the next message starts a new epoch at offset 1. On a Redis Cluster both keys and the
channel's topic carry the channel as a hash tag: one slot, so one script.

A subscriber recovers what it missed from the stream (:meth:`RedisHistory.recover`); a node whose
connection to Redis came back reads what its channels missed meanwhile and delivers it before the
live messages that came in since (:meth:`RedisHistory.catch_up`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable

from tidings.brokers.base import Broker
from tidings.brokers.envelope import EnvelopeError, open_envelope
from tidings.brokers.redis.connection import FAILURES, RedisConnection
from tidings.brokers.redis.scripts import (
    CLUSTER_PUBLISH_HISTORY,
    CLUSTER_READ_HISTORY,
    PUBLISH_HISTORY,
    READ_HISTORY,
)
from tidings.channels import HistoryRule, recovery_from
from tidings.errors import BrokerError
from tidings.message import Outgoing, Position, Recovery

logger = logging.getLogger("tidings.broker")

#: What a history read gives: (offset, sender's session id, message) per entry.
Entries = list[tuple[int, str | None, Outgoing]]


class RedisHistory:
    """The history channels of one broker: appends, reads, and what this node received of each."""

    def __init__(self, broker: Broker, connection: RedisConnection) -> None:
        self.broker = broker
        self.connection = connection
        #: The last position this node received, per channel.
        self.positions: dict[str, Position] = {}
        #: While the node catches up after Redis came back: the live messages held meanwhile.
        self.held: dict[str, list[tuple[str | None, Outgoing]]] = {}
        self._catching_up: set[asyncio.Task[None]] = set()
        # On a Redis Cluster the scripts SPUBLISH, and read the master's id where they run instead of
        # the ``master`` key (which is in a slot of its own).
        cluster = connection.cluster
        self._publish_script = CLUSTER_PUBLISH_HISTORY if cluster else PUBLISH_HISTORY
        self._read_script = CLUSTER_READ_HISTORY if cluster else READ_HISTORY

    def _keys(self, channel: str) -> tuple[str, str, str]:
        """The keys of ``channel``'s history scripts: stream, meta, master (a cluster: meta again)."""
        key = self.connection.key
        meta = key("meta", channel)
        return key("history", channel), meta, meta if self.connection.cluster else key("master")

    def append(
        self,
        channel: str,
        topic: bytes,
        rule: HistoryRule,
        envelope: bytes,
        log: tuple[str, int, int, str] | None = None,
    ) -> asyncio.Future[int]:
        """Queue the script that appends ``envelope`` to ``channel``'s history and publishes it (and
        appends it to the packet log of connection state recovery: ``log``, its key and arguments)."""
        keys = (*self._keys(channel), topic)
        ttl = max(1, int(rule.ttl * 1000))
        args = (rule.size, ttl, secrets.token_urlsafe(6), envelope)
        if log is None:
            return self.connection.queue(("EVAL", self._publish_script, 4, *keys, *args))
        log_key, *log_args = log
        command = ("EVAL", self._publish_script, 5, *keys, log_key, *args, *log_args)
        return self.connection.queue(command)

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        position, entries = await self.read(channel, rule, since)
        first = entries[0][0] if entries else None
        reason = recovery_from(since, position, first)
        if since is None or reason is not None:
            return Recovery(position, reason=reason)
        return Recovery(position, [outgoing for _, _, outgoing in entries])

    async def contents(self, channel: str, rule: HistoryRule) -> tuple[Position, list[tuple[int, Outgoing]]]:
        """The history's position and every message it holds, with its offset (two reads: the
        epoch first, then the entries of that epoch)."""
        position, _ = await self.read(channel, rule, None)
        position, entries = await self.read(channel, rule, Position(0, position.epoch))
        return position, [(offset, outgoing) for offset, _, outgoing in entries]

    async def read(self, channel: str, rule: HistoryRule, since: Position | None) -> tuple[Position, Entries]:
        """The history's position and its entries after ``since``: (offset, sender, message)."""
        connection = self.connection
        if connection.client is None:
            raise connection.not_connected()
        keys = self._keys(channel)
        since_args = (since.offset, since.epoch) if since is not None else (-1, "")
        args = (secrets.token_urlsafe(6), max(1, int(rule.ttl * 1000)), *since_args)
        try:
            epoch, offset, raw = await connection.client.eval(self._read_script, 3, *keys, *args)
        except FAILURES as error:
            raise connection.failure(error) from None
        entries = []
        for entry_id, fields in raw:
            data = dict(zip(fields[::2], fields[1::2], strict=True)).get(b"d", b"")
            try:
                sender, outgoing = open_envelope(data)
            except EnvelopeError as error:
                logger.error("broker: dropped a history entry of %r: %s", channel, error)
                continue
            entries.append((int(entry_id.partition(b"-")[0]), sender, outgoing))
        return Position(int(offset), epoch.decode()), entries

    def fresh(self, channel: str, outgoing: Outgoing) -> bool:
        """Whether this node has not had ``outgoing`` yet (a message of a channel with history)."""
        position = outgoing.position
        assert position is not None
        last = self.positions.get(channel)
        if last is not None and last.epoch == position.epoch and position.offset <= last.offset:
            return False
        self.positions[channel] = position
        return True

    def forget(self, channel: str) -> None:
        """The node left ``channel``: what it received of it no longer matters."""
        self.positions.pop(channel, None)
        self.held.pop(channel, None)

    def clear(self) -> None:
        self.positions.clear()
        self.held.clear()

    # -- after Redis came back ---------------------------------------------------------------------

    def catch_up(self, channels: Iterable[str]) -> None:
        """Redis came back: deliver what those of ``channels`` with history missed, then go on live."""
        options = self.broker.options
        if not options.history_rules:
            return
        loop = asyncio.get_running_loop()
        for channel in channels:
            rule = options.history(channel)
            if rule is not None and channel not in self.held:
                self.held[channel] = []
                task = loop.create_task(self._catch_up(channel, rule), name="tidings-redis-catch-up")
                self._catching_up.add(task)
                task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self, channel: str, rule: HistoryRule) -> None:
        delay = 0.05
        since = self.positions.get(channel)
        while True:
            try:
                position, entries = await self.read(channel, rule, since)
                if since is None or since.epoch != position.epoch:  # all of this epoch is new here
                    position, entries = await self.read(channel, rule, Position(0, position.epoch))
                break
            except BrokerError as error:
                if channel not in self.held:
                    return  # the node left the channel meanwhile
                logger.warning("broker: reading the history of %r failed (%s); retrying", channel, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        held = self.held.pop(channel, None)
        hub = self.broker.hub
        if held is None or hub is None:
            return
        if since is not None and since.epoch != position.epoch:
            logger.warning("broker: the history of channel %r restarted (epoch %s)", channel, position.epoch)
        first = since.offset + 1 if since is not None and since.epoch == position.epoch else 1
        if entries and entries[0][0] > first:
            logger.warning("broker: channel %r lost messages while Redis was away (history trimmed)", channel)
        for sender, outgoing in [*((s, o) for _, s, o in entries), *held]:
            if self.fresh(channel, outgoing):
                try:
                    hub.publish(outgoing, hub.sessions.get(sender) if sender is not None else None)
                except Exception:  # a bug below us must not stop the others
                    logger.exception("broker: delivering a recovered message of %r failed", channel)
