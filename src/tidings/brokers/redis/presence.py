"""The Redis broker's presence (channels the ``presence`` setting names): who is in, on every node.

Under the name prefix:

- ``<prefix>presence:<channel>``: a hash of session id to ``[node id, info]``; it expires
  twice ``presence_timeout`` after the last heartbeat of a node with members in it.
- ``<prefix>alive:<node id>``: set by each node every ``presence_timeout / 3`` seconds, expiring
  after ``presence_timeout``. Entries of a node without it (stopped, killed, cut off) are left out
  when presence is read.
- ``<prefix>nodes``: the nodes that keep presence; ``<prefix>channels-of:<node id>``: the channels
  where a node has entries.

After each heartbeat a node runs :data:`~tidings.brokers.redis.scripts.REAP_PRESENCE`: it takes the
nodes whose ``alive`` key is gone out of ``nodes``, with their entries, in one atomic step, and
announces the leave of each entry it took (in the ``presence`` notices of their channels,
:mod:`~tidings.brokers.notices`). However many nodes run it, each dead member's leave is announced
once, by the node whose script found it first, ``presence_timeout`` to ``4/3 presence_timeout`` after
its node's last heartbeat. A node that was taken for dead but was only late (its loop blocked longer
than ``presence_timeout``) finds the ``<prefix>reaped:<node id>`` mark at its next heartbeat: it
enters its members again and announces them as joined (those that left meanwhile are announced as
gone a second time instead, by the node itself).

On a Redis Cluster the keys carry their channel or node as a hash tag (``<prefix>presence:{<channel>}``,
``<prefix>alive:{<node id>}``), and the reaper goes slot by slot: a script in the dead node's slot
claims it (sets its mark, takes its set of channels), one per channel takes its entries out of that
channel's hash. One node claims each dead node, so each leave is still announced once. Not one
atomic step, though: a node that was only late, and enters its members again in the moment between
the two, loses those entries to the second (announced as gone after they were announced as joined, left
out of presence until it reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from tidings.brokers.base import Broker
from tidings.brokers.redis.connection import FAILURES, Command, RedisConnection, cancel
from tidings.brokers.redis.scripts import CLAIM_NODE, REAP_PRESENCE, TAKE_ENTRIES
from tidings.channels import presence_list

logger = logging.getLogger("tidings.broker")

#: Milliseconds the mark of a node taken for dead stays: a process frozen that long (stopped, a paused
#: machine) that comes back still finds it, and enters its members again.
REAPED_MARK_TTL = 3_600_000


class RedisPresence:
    """One node's presence entries: joins and leaves, the heartbeat that keeps them, and reading."""

    def __init__(self, broker: Broker, connection: RedisConnection, node_id: str) -> None:
        self.broker = broker
        self.connection = connection
        self.node_id = node_id
        #: How many local members each presence channel has (what the heartbeat keeps alive).
        self.present: dict[str, int] = {}
        self._heart: asyncio.Task[None] | None = None
        self._channels_key = connection.key("channels-of", node_id)

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
            with contextlib.suppress(*FAILURES):
                await client.delete(self.connection.key("alive", self.node_id))
        heart, self._heart = self._heart, None
        await cancel(heart)
        self.present.clear()

    def join(self, channel: str, session_id: str, info: Any) -> None:
        """Enter ``session_id`` (``info``: JSON-able, the hub checked) in ``channel``'s hash."""
        key = self.connection.key("presence", channel)
        count = self.present.get(channel, 0)
        self.present[channel] = count + 1
        queue = self.connection.queue
        queue(("HSET", key, session_id, orjson.dumps([self.node_id, info])))
        if not count:  # the first here: from now on the heartbeat keeps the hash
            queue(("PEXPIRE", key, self._expiry()))
            queue(("SADD", self._channels_key, channel))
            queue(("PEXPIRE", self._channels_key, self._expiry()))

    def leave(self, channel: str, session_id: str) -> None:
        count = self.present.get(channel, 0) - 1
        if count > 0:
            self.present[channel] = count
        else:
            self.present.pop(channel, None)
        self.connection.queue(("HDEL", self.connection.key("presence", channel), session_id))
        if count <= 0:
            self.connection.queue(("SREM", self._channels_key, channel))

    def count(self, channel: str) -> asyncio.Future[int]:
        """How many entries ``channel``'s hash has, after this node's own changes (those of nodes
        that died and have not been reaped yet included)."""
        return self.connection.queue(("HLEN", self.connection.key("presence", channel)), write=False)

    async def members(self, channel: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Who is in ``channel``, on every node whose heartbeat is alive (about the first ``limit``
        entries of the hash, those of dead nodes left out: ``limit`` at most)."""
        connection = self.connection
        key = connection.key("presence", channel)
        # After this node's own changes.
        raw: dict[bytes, bytes]
        if limit is None:
            raw = await connection.queue(("HGETALL", key), write=False)
        else:  # HSCAN's COUNT is a hint: it reads about that many, all of a small hash
            _, raw = await connection.queue(("HSCAN", key, 0, "COUNT", limit), write=False)
        entries: dict[str, tuple[str, Any]] = {}
        for raw_id, value in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                node, info = orjson.loads(value)
                entries[raw_id.decode()] = (node, info)
        nodes = sorted({node for node, _ in entries.values()} - {self.node_id})
        if nodes and connection.client is not None:
            keys = [connection.key("alive", node) for node in nodes]
            try:
                if connection.cluster:  # the keys are in the slots of their nodes
                    alive = await connection.client.mget_nonatomic(keys)  # type: ignore[union-attr]
                else:
                    alive = await connection.client.mget(keys)
            except FAILURES as error:
                raise connection.failure(error) from None
            # Left out, not deleted: the node that reaps them announces their leave.
            dead = {node for node, value in zip(nodes, alive, strict=True) if value is None}
            entries = {session_id: entry for session_id, entry in entries.items() if entry[0] not in dead}
        members = presence_list({session_id: info for session_id, (_, info) in entries.items()})
        return members if limit is None else members[:limit]

    def enter_again(self, announce: bool = False) -> None:
        """Redis came back, and may have lost everything (a restart), or another node took this one
        for dead: say this node is alive and enter its members again (``announce``: announced as
        joined to the others, who were told they left)."""
        queue = self.connection.queue
        if self._heart is not None:
            queue(self._alive_entry())
        hub = self.broker.hub
        if hub is None:
            return
        for channel in self.present:
            queue(("SADD", self._channels_key, channel))
            for member in hub.channels.get(channel, ()):
                info = getattr(member, "presence_info", None) or {}
                with contextlib.suppress(TypeError):
                    entry = orjson.dumps([self.node_id, info])
                    queue(("HSET", self.connection.key("presence", channel), member.session_id, entry))
                    if announce:
                        self.broker.notices.joined(channel, member.session_id, info)
        queue(("PEXPIRE", self._channels_key, self._expiry()))

    def _alive_entry(self) -> Command:
        """The command that says this node is alive, for ``presence_timeout``."""
        expiry = max(1, int(self.broker.options.presence_timeout * 1000))
        return ("SET", self.connection.key("alive", self.node_id), 1, "PX", expiry)

    def _expiry(self) -> int:
        """Milliseconds a presence hash lives without a heartbeat of any node that has members in it."""
        return max(1, int(self.broker.options.presence_timeout * 2000))

    async def _beat(self) -> None:
        """This node is alive (for ``presence_timeout``), and so are its presence keys; if another
        node took it for dead meanwhile, its members enter again."""
        key, expiry = self.connection.key, self._expiry()
        assert self.connection.client is not None
        client = self.connection.client
        if self.connection.cluster:
            # This node's keys are in its own slot: one transaction there, as below; the others apart.
            own = client.pipeline(transaction=True)
            own.execute_command(*self._alive_entry())
            own.getdel(key("reaped", self.node_id))
            own.pexpire(self._channels_key, expiry)
            _, reaped, _ = await own.execute()
            shared = client.pipeline(transaction=False)
            shared.sadd(key("nodes"), self.node_id)
            shared.pexpire(key("nodes"), expiry)
            for channel in self.present:
                shared.pexpire(key("presence", channel), expiry)
            await shared.execute()
        else:
            # One transaction: a reaper runs before it (and leaves the mark) or after (and finds it alive).
            pipeline = client.pipeline(transaction=True)
            pipeline.execute_command(*self._alive_entry())
            pipeline.getdel(key("reaped", self.node_id))
            pipeline.sadd(key("nodes"), self.node_id)
            pipeline.pexpire(key("nodes"), expiry)
            pipeline.pexpire(self._channels_key, expiry)
            for channel in self.present:
                pipeline.pexpire(key("presence", channel), expiry)
            _, reaped, *_ = await pipeline.execute()
        if reaped is not None:
            logger.warning(
                "broker: this node was taken for dead (no presence heartbeat for presence_timeout, "
                "%ss): its members were announced as gone, and enter presence again",
                self.broker.options.presence_timeout,
            )
            self.enter_again(announce=True)

    async def _reap(self) -> None:
        """Take the presence entries of dead nodes (those no other node took first) and tell the
        members of their channels that they left (a notice per channel)."""
        connection = self.connection
        assert connection.client is not None
        if connection.cluster:
            taken = await self._reap_by_slot(connection.client)  # type: ignore[arg-type]
        else:
            taken = await connection.client.eval(
                REAP_PRESENCE, 1, connection.key("nodes"), connection.prefix, REAPED_MARK_TTL
            )
        for index in range(0, len(taken), 3):
            channel, session_id, entry = taken[index : index + 3]
            try:
                _, info = orjson.loads(entry)
            except (ValueError, TypeError):
                info = {}
            self.broker.notices.left(channel.decode(), session_id.decode(), info)

    async def _reap_by_slot(self, client: RedisCluster) -> list[bytes]:
        """:data:`REAP_PRESENCE` on a Redis Cluster, in steps of one slot each: each dead node is
        claimed (its mark set, its set of channels taken) by one script in its slot, then its entries
        are taken out of each channel's hash. Of several nodes reaping, one claims each dead node."""
        key = self.connection.key
        taken: list[bytes] = []
        for raw in await client.execute_command("SMEMBERS", key("nodes")):
            node = raw.decode()
            if node == self.node_id:
                continue
            keys = (key("alive", node), key("reaped", node), key("channels-of", node))
            channels = await client.eval(CLAIM_NODE, 3, *keys, REAPED_MARK_TTL)
            if channels is None:  # alive
                continue
            await client.srem(key("nodes"), node)
            for channel in channels:
                name = channel.decode()
                taken += await client.eval(TAKE_ENTRIES, 1, key("presence", name), node, name)
        return taken

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.broker.options.presence_timeout / 3)
            try:
                await self._beat()
                await self._reap()
            except FAILURES as error:
                logger.debug("broker: presence heartbeat failed: %s", error)
