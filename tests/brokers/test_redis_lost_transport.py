"""A Redis connection whose transport closed under it, on uvloop (what `tidings run` serves on):
the call fails with ``AttributeError`` or ``RuntimeError`` from redis-py or uvloop, not with a
``RedisError``. The soak's Redis restart hit it in the subscriber connection's (un)subscribe task,
which died and took its topics with it: a channel a node subscribed to then never reached that node.
Over the machine's real Redis."""

from __future__ import annotations

import asyncio

import redis
import uvloop

from tests.brokers.cluster import new_prefix
from tests.peers import REDIS_URL
from tidings import Server
from tidings.brokers.redis import RedisBroker
from tidings.message import Outgoing


async def subscribe_through_a_closed_transport(prefix: str, redis_client: redis.Redis) -> int:
    """How many subscribers Redis counts on a channel the node joined as its transport closed."""
    broker = RedisBroker(REDIS_URL, prefix=prefix)
    Server(broker=broker)
    await broker.start()
    try:
        broker._subscriptions.pubsub.connection._writer.transport.abort()  # redis-py does not know yet
        broker.first_joined("channel", "after-abort")
        await asyncio.wait_for(broker.ready(), 30)
        [(_, count)] = redis_client.pubsub_numsub(f"{prefix}channel:after-abort")
        return int(count)
    finally:
        await broker.stop()


def test_a_subscribe_through_a_closed_transport_is_sent_again(prefix: str, redis_client: redis.Redis) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(subscribe_through_a_closed_transport(prefix, redis_client)) == 1


async def publish_through_closed_transports(prefix: str) -> list[object]:
    """What publishes answer when every pooled connection's transport closed under redis-py."""
    broker = RedisBroker(REDIS_URL, prefix=prefix)
    Server(broker=broker)
    await broker.start()
    try:
        client = broker._connection.client
        assert client is not None
        await asyncio.gather(*(client.ping() for _ in range(4)))  # a few pooled connections
        for connection in client.connection_pool._available_connections:
            connection._writer.transport.abort()
        sent = [broker.broadcast(Outgoing(n), "/nobody") for n in range(3)]
        return list(await asyncio.wait_for(asyncio.gather(*sent, return_exceptions=True), 30))
    finally:
        await broker.stop()


def test_a_publish_through_a_closed_transport_is_answered() -> None:
    """The writer takes the failure for an outage and sends again: before, it died of the
    ``AttributeError`` and its callers waited for ever."""
    prefix = new_prefix()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(publish_through_closed_transports(prefix)) == [0, 0, 0]  # nobody in "/nobody"
