"""The Redis broker's presence (channels the ``presence`` setting names): who is in, on every node.

Under the name prefix:

- ``<prefix>presence:<channel>``: a hash of session id to ``[node id, info]``; it expires
  twice ``presence_timeout`` after the last heartbeat of a node with members in it.
- ``<prefix>alive:<node id>``: set by each node every ``presence_timeout / 3`` seconds, expiring
  after ``presence_timeout``. The entries of a node without it (stopped, killed, cut off) are dropped
  when presence is read: a dead node's members are gone ``presence_timeout`` after its last beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from redis.exceptions import RedisError

from tidings.brokers.base import Broker
from tidings.brokers.redis.connection import Command, RedisConnection, cancel
from tidings.channels import presence_list

logger = logging.getLogger("tidings.broker")


class RedisPresence:
    """One node's presence entries: joins and leaves, the heartbeat that keeps them, and reading."""

    def __init__(self, broker: Broker, connection: RedisConnection, node_id: str) -> None:
        self.broker = broker
        self.connection = connection
        self.node_id = node_id
        #: How many local members each presence channel has (what the heartbeat keeps alive).
        self.present: dict[str, int] = {}
        self._heart: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Say this node is alive and keep saying so, if any channel has presence."""
        if self.broker.options.presence_rules:
            await self._beat()
            self._heart = asyncio.get_running_loop().create_task(
                self._heartbeat(), name="tidings-redis-presence"
            )

    async def stop(self) -> None:
        """This node's entries go now (it says it is no longer alive); the heartbeat stops."""
        client = self.connection.client
        if self._heart is not None and client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.delete(self.connection.key("alive", self.node_id))
        heart, self._heart = self._heart, None
        await cancel(heart)
        self.present.clear()

    def join(self, channel: str, session_id: str, info: Any) -> None:
        key = self.connection.key("presence", channel)
        try:
            entry = orjson.dumps([self.node_id, info])
        except TypeError as error:
            logger.error("presence info of %s cannot be stored: %s", session_id, error)
            entry = orjson.dumps([self.node_id, {}])
        self.present[channel] = self.present.get(channel, 0) + 1
        self.connection.queue(("HSET", key, session_id, entry))
        self.connection.queue(("PEXPIRE", key, self._expiry()))

    def leave(self, channel: str, session_id: str) -> None:
        count = self.present.get(channel, 0) - 1
        if count > 0:
            self.present[channel] = count
        else:
            self.present.pop(channel, None)
        self.connection.queue(("HDEL", self.connection.key("presence", channel), session_id))

    async def members(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel``, on every node whose heartbeat is alive."""
        connection = self.connection
        key = connection.key("presence", channel)
        # After this node's own changes.
        raw: dict[bytes, bytes] = await connection.queue(("HGETALL", key), write=False)
        entries: dict[str, tuple[str, Any]] = {}
        for raw_id, value in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                node, info = orjson.loads(value)
                entries[raw_id.decode()] = (node, info)
        nodes = sorted({node for node, _ in entries.values()} - {self.node_id})
        if nodes and connection.client is not None:
            try:
                alive = await connection.client.mget([connection.key("alive", node) for node in nodes])
            except (RedisError, OSError) as error:
                raise connection.failure(error) from None
            dead = {node for node, value in zip(nodes, alive, strict=True) if value is None}
            gone = [session_id for session_id, (node, _) in entries.items() if node in dead]
            if gone:
                connection.queue(("HDEL", key, *gone))
                for session_id in gone:
                    del entries[session_id]
        return presence_list({session_id: info for session_id, (_, info) in entries.items()})

    def enter_again(self) -> None:
        """Redis came back, and may have lost everything (a restart): say this node is alive and
        enter its members again, before another node reading presence drops them."""
        if self._heart is not None:
            self.connection.queue(self._alive_entry())
        hub = self.broker.hub
        if hub is not None:
            for channel in self.present:
                for member in hub.channels.get(channel, ()):
                    info = getattr(member, "presence_info", None) or {}
                    with contextlib.suppress(TypeError):
                        entry = orjson.dumps([self.node_id, info])
                        key = self.connection.key("presence", channel)
                        self.connection.queue(("HSET", key, member.session_id, entry))

    def _alive_entry(self) -> Command:
        """The command that says this node is alive, for ``presence_timeout``."""
        expiry = max(1, int(self.broker.options.presence_timeout * 1000))
        return ("SET", self.connection.key("alive", self.node_id), 1, "PX", expiry)

    def _expiry(self) -> int:
        """Milliseconds a presence hash lives without a heartbeat of any node that has members in it."""
        return max(1, int(self.broker.options.presence_timeout * 2000))

    async def _beat(self) -> None:
        """This node is alive (for ``presence_timeout``), and so are its presence hashes."""
        assert self.connection.client is not None
        pipeline = self.connection.client.pipeline(transaction=False)
        pipeline.execute_command(*self._alive_entry())
        for channel in self.present:
            pipeline.pexpire(self.connection.key("presence", channel), self._expiry())
        await pipeline.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.broker.options.presence_timeout / 3)
            try:
                await self._beat()
            except (RedisError, OSError) as error:
                logger.debug("broker: presence heartbeat failed: %s", error)
