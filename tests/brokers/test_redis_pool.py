"""Many reads at once through one node's Redis client: more than its pool has connections
(`POOL_CONNECTIONS`) wait for one, as the soak's thousands of recovering clients needed
(bench/soak.py lost messages to "Too many connections" before), on the machine's real Redis."""

from __future__ import annotations

import asyncio

from tests.peers import REDIS_URL
from tidings.brokers.redis import RedisBroker
from tidings.brokers.redis.connection import POOL_CONNECTIONS
from tidings.channels import HistoryRule
from tidings.message import Outgoing
from tidings.settings import Settings


async def test_reads_beyond_the_pool_wait_for_a_connection(prefix: str) -> None:
    broker = RedisBroker(REDIS_URL, prefix=prefix)
    broker.configure(Settings(history=[("^hist-", 50, 60)]))
    await broker.connect()
    try:
        rule = HistoryRule(50, 60)
        await broker.publish(Outgoing("kept", "hist-pool"))
        recoveries = await asyncio.gather(
            *[broker.recover("hist-pool", rule, None) for _ in range(5 * POOL_CONNECTIONS)],
            return_exceptions=True,
        )
        assert [r for r in recoveries if isinstance(r, BaseException)] == []
    finally:
        await broker.stop()
