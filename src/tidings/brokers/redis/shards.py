"""The Redis broker's subscriber connections on a Redis Cluster: one per master, to its shard channels.

On a Redis Cluster (``redis+cluster://``) every topic is a shard channel: SPUBLISH hands a message to
the subscribers of its channel on the master that owns the channel's slot (and its replicas), instead
of every node of the cluster as PUBLISH does. A node subscribes to each topic (SSUBSCRIBE, one command
per slot) on a connection to the master of its slot, found in redis-py's map of the cluster's slots
(``RedisCluster``): one connection, with a reader task, per master it has topics on. Messages of one
topic come in on one connection, in the order the master executed the SPUBLISHes.

When a master dies, its connection fails; when a slot moves away from a master that stays up (a
manual ``CLUSTER FAILOVER``, a resharding), Redis unsubscribes its channels there itself (an
``sunsubscribe`` the node did not ask for). Either way their topics wait for a new master: the map of
slots is read again until one owns them, they are subscribed there, and the broker is told which
(it catches their histories up and tells the members of its other channels they may have missed
messages, as after any reconnection). A connection that fails for another reason (the network, the
node's backlog shed) goes the same way: it is not reconnected by redis-py, whose PubSub would
subscribe all its shard channels in one SSUBSCRIBE, which a master of several slots refuses.

redis-py's ``ClusterPubSub`` does not serve here: its reader asks each master in turn for a message
with a timeout, so no one read waits on every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError, ResponseError

from tidings.brokers.redis.connection import FAILURES, cancel, describe

logger = logging.getLogger("tidings.broker")


class Shard:
    """One master's subscriber connection and its reader."""

    __slots__ = ("client", "name", "pubsub", "reader")

    def __init__(self, name: str, client: aioredis.Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub = client.pubsub()
        self.reader: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await cancel(self.reader)
        with contextlib.suppress(*FAILURES):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
            await self.client.aclose()


class Shards:
    """A node's shard channel subscriptions on a Redis Cluster, on one connection per master.

    It stands in for a PubSub in :class:`~tidings.brokers.redis.subscriptions.Subscriptions`
    (``subscribe``, ``unsubscribe``, ``aclose``); what comes in goes to ``received(topic, data)``, the
    confirmations of subscribes to ``confirmed(topic)``; ``lost(error)`` says a master was lost (once
    per outage) and ``moved(topics)`` that those topics are subscribed again, on their new master.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        connect: Callable[[ClusterNode], aioredis.Redis],
        received: Callable[[bytes, bytes], None],
        confirmed: Callable[[bytes], None],
        lost: Callable[[BaseException], None],
        moved: Callable[[list[bytes]], None],
    ) -> None:
        self._cluster = cluster
        self._connect = connect
        self._received = received
        self._confirmed = confirmed
        self._lost = lost
        self._moved = moved
        #: The master (its ``host:port``) each subscribed topic is subscribed on.
        self.where: dict[bytes, str] = {}
        self._shards: dict[str, Shard] = {}
        # Topics whose master was lost or gave their slot away, waiting for a new one.
        self._waiting: set[bytes] = set()
        self._mover: asyncio.Task[None] | None = None

    async def subscribe(self, *topics: bytes) -> None:
        """SSUBSCRIBE ``topics`` on the masters of their slots (one command per slot)."""
        try:
            for node, slot_topics in self._by_slot(topics):
                shard = self._shards.get(node.name) or Shard(node.name, self._connect(node))
                try:
                    await shard.pubsub.ssubscribe(*slot_topics)
                finally:
                    if shard.reader is None and shard.pubsub.subscribed:  # its first: read it from now on
                        self._shards[shard.name] = shard
                        loop = asyncio.get_running_loop()
                        shard.reader = loop.create_task(self._read(shard), name=f"tidings-redis-{node.name}")
                    elif shard.reader is None:
                        await shard.close()
                for topic in slot_topics:
                    self.where[topic] = shard.name
        except FAILURES:
            with contextlib.suppress(*FAILURES):  # the slots' masters may have changed
                await self._cluster.nodes_manager.initialize()
            raise

    async def unsubscribe(self, *topics: bytes) -> None:
        for topic in topics:
            self._waiting.discard(topic)
            shard = self._shards.get(self.where.pop(topic, ""))
            if shard is not None:
                await shard.pubsub.sunsubscribe(topic)

    async def aclose(self) -> None:
        await cancel(self._mover)
        shards = list(self._shards.values())
        self._shards.clear()
        self.where.clear()
        self._waiting.clear()
        for shard in shards:
            await shard.close()

    def _by_slot(self, topics: Iterable[bytes]) -> list[tuple[ClusterNode, list[bytes]]]:
        """``topics`` by slot, each with the master the map of slots gives it."""
        cluster = self._cluster
        slots: dict[int, tuple[ClusterNode, list[bytes]]] = {}
        for topic in topics:
            slot = cluster.keyslot(topic)
            if slot not in slots:
                node = cluster.get_node_from_key(topic.decode())
                assert node is not None  # a master: replica=False
                slots[slot] = (node, [])
            slots[slot][1].append(topic)
        return list(slots.values())

    async def _read(self, shard: Shard) -> None:
        pubsub = shard.pubsub
        while True:
            try:
                message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
            except ResponseError as error:  # an SSUBSCRIBE refused: MOVED, the map of slots was behind
                logger.info("broker: Redis Cluster master %s refused a subscribe: %s", shard.name, error)
                await self._misplaced(shard)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # RedisError, OSError; anything else is logged with its traceback
                await self._drop(shard, error)
                return
            if message is None:
                continue
            kind, topic = message["type"], message["channel"]
            if kind == "smessage":
                self._received(topic, message["data"])
            elif kind == "ssubscribe":
                self._confirmed(topic)
            elif kind == "sunsubscribe" and self.where.get(topic) == shard.name:
                # Not asked for: the master gave the slot away (a failover, a resharding).
                pubsub.shard_channels.pop(topic, None)
                self._wait_for_master([topic])

    async def _misplaced(self, shard: Shard) -> None:
        """Read the map of slots again; the topics of ``shard`` that another master owns now wait
        for it (they are subscribed there)."""
        cluster = self._cluster
        with contextlib.suppress(*FAILURES):
            await cluster.nodes_manager.initialize()
        misplaced = []
        for topic, name in self.where.items():
            if name == shard.name:
                try:
                    owner = cluster.get_node_from_key(topic.decode())
                except FAILURES:
                    owner = None
                if owner is None or owner.name != name:
                    misplaced.append(topic)
                    shard.pubsub.shard_channels.pop(topic, None)
        self._wait_for_master(misplaced)

    async def _drop(self, shard: Shard, error: BaseException) -> None:
        """``shard``'s master was lost: close its connection; its topics wait for a new master."""
        known = isinstance(error, FAILURES)
        if not known:
            logger.error("broker: reading Redis Cluster master %s failed", shard.name, exc_info=True)
        self._shards.pop(shard.name, None)
        shard.reader = None  # the task calling: it ends
        with contextlib.suppress(*FAILURES):
            await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
            await shard.client.aclose()
        self._lost(RedisError(f"master {shard.name}: {describe(error)}") if known else error)
        self._wait_for_master([topic for topic, name in self.where.items() if name == shard.name])

    def _wait_for_master(self, topics: list[bytes]) -> None:
        for topic in topics:
            del self.where[topic]
        self._waiting.update(topics)
        if self._mover is None:
            self._mover = asyncio.get_running_loop().create_task(self._move(), name="tidings-redis-move")

    async def _move(self) -> None:
        """Subscribe the waiting topics on the masters that own their slots now, once the cluster
        names some (its failover can take a few ``cluster-node-timeout``\\ s)."""
        delay = 0.1
        try:
            while self._waiting:
                await asyncio.sleep(delay)
                topics = list(self._waiting)
                try:
                    await self._cluster.nodes_manager.initialize()
                    await self.subscribe(*topics)
                except Exception as error:  # not only FAILURES: see the subscriber's controller
                    logger.debug("broker: no master for %d topic(s) yet: %r", len(topics), error)
                    delay = min(delay * 2, 2.0)
                    continue
                moved = [topic for topic in topics if topic in self._waiting]
                self._waiting.difference_update(topics)
                left = [topic for topic in topics if topic not in moved]  # unsubscribed meanwhile
                if left:
                    with contextlib.suppress(*FAILURES):
                        await self.unsubscribe(*left)
                self._moved(moved)
                delay = 0.1
        finally:
            self._mover = None
