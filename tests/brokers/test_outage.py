"""Redis away: an outage of the Redis the nodes use (publishes wait in the broker's buffer and go out in
order), and a Sentinel failover (the master SIGKILLed mid-stream, the nodes go on with the replica).

Real `tidings run` nodes of tests/brokers/buffer_app.py, python-socketio clients on them, redis-servers
(and sentinels) of the test's own on loopback ports, killed and started by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tidings
from tests.brokers.cluster import OwnRedis, Sentinels, running_nodes, until
from tests.python_client import PythonClient
from tests.serving import TidingsProcess, free_port
from tidings.brokers import broker_from
from tidings.brokers.redis import RedisBroker, safe_url
from tidings.brokers.redis.connection import parse_sentinel_url

APP = "tests/brokers/buffer_app.py"


@contextlib.asynccontextmanager
async def clients(*nodes: TidingsProcess) -> AsyncIterator[list[PythonClient]]:
    """A python-socketio client on each of ``nodes``, WebSocket only, disconnected afterwards."""
    connected = []
    try:
        for node in nodes:
            client = PythonClient("async", reconnection=False)
            await client.connect(node.url, transports=["websocket"])
            connected.append(client)
        yield connected
    finally:
        for client in connected:
            await client.shutdown()


async def subscribe(
    client: PythonClient, channel: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call("subscribe", channel, *([{"since": since}] if since else []))
    return answer


async def messages(client: PythonClient, count: int) -> list[tuple[Any, ...]]:
    """The next ``count`` messages: (message, channel, position) each."""
    return [await client.event("message", timeout=30) for _ in range(count)]


async def test_publishes_while_redis_is_away_wait_and_go_out_in_order(own_redis: OwnRedis) -> None:
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    with running_nodes("outage:", 2, own_redis.url, f"{APP}:app") as nodes:
        async with clients(*nodes) as (sender, other):
            for client in (sender, other):
                assert (await subscribe(client, channel))["ok"] is True
            for n in range(3):
                assert await sender.call("publish", channel, n) == {"reached": 2}
            own_redis.stop()
            for n in range(3, 23):  # they wait: nobody took them yet, and nothing is raised
                assert await sender.call("publish", channel, n) == {"reached": 0}
            own_redis.start()  # empty (no persistence): the history starts a new epoch
            for client in (sender, other):
                got = await messages(client, 23)
                assert [message for message, _, _ in got] == list(range(23))  # once each, in order
                positions = [position for _, _, position in got]
                assert [p["offset"] for p in positions] == [1, 2, 3, *range(1, 21)]
                before, after = {p["epoch"] for p in positions[:3]}, {p["epoch"] for p in positions[3:]}
                assert len(before) == len(after) == 1 and before != after
            assert await sender.call("publish", channel, "live") == {"reached": 2}


async def test_a_full_buffer_drops_the_oldest_or_refuses_as_its_policy_says(own_redis: OwnRedis) -> None:
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    with (
        running_nodes("full:", 1, own_redis.url, f"{APP}:dropping") as [dropping],
        running_nodes("full:", 1, own_redis.url, f"{APP}:refusing") as [refusing],
    ):
        async with clients(dropping, refusing) as (dropper, refuser):
            for client in (dropper, refuser):
                assert (await subscribe(client, channel))["ok"] is True
            own_redis.stop()
            for n in range(8):  # 5 wait; each one more drops the oldest waiting
                assert await dropper.call("publish", channel, ["d", n]) == {"reached": 0}
            refused = (
                f"BrokerError: the Redis broker at {own_redis.url} cannot be reached and 5 write(s) wait"
            )
            for n in range(8):  # 5 wait; the others are refused
                answer = await refuser.call("publish", channel, ["r", n])
                if n < 5:
                    assert answer == {"reached": 0}
                else:
                    assert answer["error"].startswith(refused), answer
            own_redis.start()
            for client in (dropper, refuser):
                got = [message for message, _, _ in await messages(client, 10)]
                assert [n for node, n in got if node == "d"] == [3, 4, 5, 6, 7]
                assert [n for node, n in got if node == "r"] == [0, 1, 2, 3, 4]
    for server, what in ((dropping, "dropped"), (refusing, "refused")):
        assert f"3 write(s) were {what} meanwhile (broker_buffer full)" in server.log.read_text()


async def test_a_sentinel_failover_mid_stream(tmp_path: Path) -> None:
    """Two nodes on a master, its replica and three sentinels; the master is SIGKILLed mid-stream.
    The nodes find the promoted replica, resubscribe and go on; the history channel starts a new
    epoch there (the replica may lack what the master acknowledged), which the clients see."""
    group = Sentinels(tmp_path)
    group.start()
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    try:
        await until(group.watching, timeout=30, what="the sentinels watch the master and its replica")
        with running_nodes("failover:", 2, group.url, f"{APP}:app") as nodes:
            async with clients(nodes[0], nodes[1], nodes[0]) as (first, second, leaving):
                for client in (first, second, leaving):
                    assert (await subscribe(client, channel))["ok"] is True
                counts = []
                async with tidings.Publisher(group.url, "failover:") as publisher:
                    for n in range(200):
                        if n == 20:
                            *_, (_, _, position) = await messages(leaving, 20)
                            await leaving.disconnect()
                        if n == 40:
                            group.master.kill()
                        try:
                            counts.append(await publisher.abroadcast_channel(n, channel))
                        except tidings.NoSocket:  # on the new master before the nodes resubscribed
                            counts.append(None)
                        await asyncio.sleep(0.02)
                    assert counts[:40] == [2] * 40
                    assert 0 in counts[40:]  # waited in the buffer while no master answered
                    assert group.master_port() == group.replica.port
                    for client in (first, second):
                        got = await messages(client, 200)
                        numbers = [message for message, _, _ in got]
                        epochs = [p["epoch"] for _, _, p in got]
                        offsets = [p["offset"] for _, _, p in got]
                        assert numbers == list(range(200))  # nothing lost, nothing twice, in order
                        assert len(set(epochs[:40])) == len(set(epochs[40:])) == 1 and epochs[0] != epochs[40]
                        assert offsets == [*range(1, 41), *range(1, 161)]
                async with clients(nodes[1]) as [back]:  # left before the failover: told, not fooled
                    answer = await subscribe(back, channel, position)
                    assert (answer["recovered"], answer["reason"]) == (False, "epoch changed")
                    assert answer["offset"] == 160
    finally:
        group.stop()


async def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    parsed = parse_sentinel_url("redis+sentinel://ada:s%40cret@10.0.0.5,10.0.0.6:26380,[::1]:26381/shop/2")
    assert parsed == ([("10.0.0.5", 26379), ("10.0.0.6", 26380), ("::1", 26381)], "shop", 2, "ada", "s@cret")
    assert parse_sentinel_url("redis+sentinel://h:1/mymaster") == ([("h", 1)], "mymaster", 0, None, None)
    url = "redis+sentinel://:pw@h1:26379,h2:26380/mymaster/0"
    assert safe_url(url) == "redis+sentinel://:***@h1:26379,h2:26380/mymaster/0"
    assert isinstance(broker_from(url), RedisBroker)
    for bad in ("redis+sentinel://h1:26379", "redis+sentinel://h1:x/m", "redis+sentinel://h1/m/zero"):
        with pytest.raises(ValueError, match=r"no sentinel|the service name"):
            broker_from(bad)
    nowhere = f"redis+sentinel://:pw@127.0.0.1:{free_port()}/mymaster/0"  # no sentinel listens there
    with pytest.raises(tidings.BrokerError) as raised:
        await RedisBroker(nowhere).connect()
    assert str(raised.value) == (
        f"cannot reach the Redis broker at {safe_url(nowhere)}: no sentinel names a master for the "
        "service (they cannot be reached, or fail over)"
    )


async def test_a_publisher_s_buffer_and_its_settings(own_redis: OwnRedis) -> None:
    """A publish that waits counts 0; without a buffer (``broker_buffer=0``) it raises, as before."""
    for bad in ({"broker_buffer": -1}, {"broker_buffer_policy": "drop-newest"}):
        with pytest.raises(ValueError, match="broker_buffer"):
            tidings.Settings(**bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="broker_buffer"):
            tidings.Publisher(own_redis.url, **bad)  # type: ignore[arg-type]
    async with (
        tidings.Publisher(own_redis.url, "publisher:") as waiting,
        tidings.Publisher(own_redis.url, "publisher:", broker_buffer=0) as raising,
    ):
        for publisher in (waiting, raising):
            with pytest.raises(tidings.NoSocket):  # connected; no server has a socket in it
                await publisher.abroadcast_channel("first", "room")
        own_redis.stop()
        assert await waiting.abroadcast_channel("kept", "room") == 0
        with pytest.raises(tidings.BrokerError, match="failed: Error 111"):
            await raising.abroadcast_channel("lost", "room")
        own_redis.start()
        for publisher in (waiting, raising):
            await until(lambda p=publisher: _answers(p), what="the publisher works again")


async def _answers(publisher: tidings.Publisher) -> bool:
    try:
        await publisher.abroadcast_channel("again", "room")
    except tidings.NoSocket:
        return True
    except tidings.BrokerError:
        return False
    return False
