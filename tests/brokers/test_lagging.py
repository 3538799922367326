"""A node too slow to read what Redis publishes to it is told so, not cut silently: a `tidings run` node
(tests/brokers/lagging_app.py: 256 KiB of backlog allowed) whose event loop is blocked on purpose while
a publisher floods its channels, on a Redis of the test's own with its default output limits.
"""

from __future__ import annotations

import contextlib
import uuid

import httpx

import tidings
from tests.brokers.clients import Client
from tests.brokers.cluster import OwnRedis, broker_args
from tests.server.test_metrics import parse, series
from tests.serving import TidingsProcess

BIG = "x" * 16_000


async def flood_while_blocked(client: Client, publisher: tidings.Publisher, history: str, plain: str) -> None:
    """Block ``client``'s node for 4 s and publish 19 MB to ``plain`` meanwhile (less than Redis' own
    limit, 32 MB; far more than the node's and the sockets' buffers), a numbered message to
    ``history`` every 40. Once the node has shed its connection, nobody takes them (NoSocket)."""
    await client.emit("block", 4)
    for n in range(1200):
        with contextlib.suppress(tidings.NoSocket):
            await publisher.abroadcast_channel([n, BIG], plain)
        if n % 40 == 0:
            with contextlib.suppress(tidings.NoSocket):
                await publisher.abroadcast_channel(n // 40, history)


async def caught_up_and_lagged(client: Client, history: str, plain: str) -> None:
    """What ``client`` gets after the flood: every message of ``history``, in order and once (its
    node caught up from the stream), one ``lagging`` for ``plain``, and not all of ``plain``."""
    got: dict[str, list[object]] = {history: [], plain: [], "lagging": []}
    while not got["lagging"] or len(got[history]) < 30:
        event = await client.event()
        if event[0] == "lagging":
            got["lagging"].append(event[1:])
        else:
            assert event[0] == "message", event
            got[event[2]].append(event[1])
    assert got[history] == list(range(30))  # caught up: in order, none lost, none twice
    assert got["lagging"] == [[plain]]
    assert len(got[plain]) < 1200  # the backlog was dropped


async def test_a_blocked_node_sheds_its_backlog_its_history_channels_recover_the_others_lag(
    own_redis: OwnRedis,
) -> None:
    history, plain = f"hist-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    node = TidingsProcess("tests/brokers/lagging_app.py:app", None, *broker_args("lag:", own_redis.url))
    node.start()
    try:
        client = await Client.connect(node.url)
        await client.subscribe(history)
        await client.subscribe(plain)
        assert await client.call("counts") == [0, 0]
        async with tidings.Publisher(own_redis.url, "lag:") as publisher:
            await flood_while_blocked(client, publisher, history, plain)
        await caught_up_and_lagged(client, history, plain)
        assert await client.call("counts") == [1, 1]
        samples = parse(httpx.get(node.url + "/metrics", timeout=10).text)
        assert series(samples, "tidings_broker_sheds_total") == {"": 1}
        assert series(samples, "tidings_broker_reconnects_total") == {"": 1}
        assert series(samples, "tidings_broker_backlog_bytes")[""] >= 0
        await client.nothing(0.5)
        await client.close()
    finally:
        node.stop()
