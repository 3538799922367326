"""History, recovery and presence with the Redis broker, and its faults: real `tidings run` processes on
the machine's Redis (a prefix per run), and a private redis-server for the restart and the kill.

The app (tests/brokers/app.py) keeps 50 messages of ``hist-*`` channels, tracks presence in ``pres-*``
ones, and gives a dead node's presence entries 1.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import tidings
from tests.brokers.clients import Client, notice, told
from tests.brokers.cluster import APP, REDIS_URL, OwnRedis, broker_args, new_prefix, running_nodes, until
from tests.serving import TidingsProcess


@pytest.fixture(scope="module")
def nodes(prefix: str) -> Iterator[list[TidingsProcess]]:
    with running_nodes(prefix, 2) as servers:
        yield servers


async def publish_surely(publisher: tidings.Publisher, message: Any, channel: str) -> None:
    """Publish once, retrying while Redis is away (a failed publish is not in the history)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            await publisher.abroadcast_channel(message, channel)
            return
        except tidings.NoSocket:
            return  # taken into the history, nobody subscribed right now
        except tidings.BrokerError:
            assert time.monotonic() < deadline, "Redis did not come back"
            await asyncio.sleep(0.05)


def numbers(events: list[list[Any]]) -> list[Any]:
    return [args[0] for args in events]


async def test_a_client_that_drops_recovers_on_another_node(nodes: list[TidingsProcess], prefix: str) -> None:
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    watcher, dropping = await asyncio.gather(Client.connect(nodes[0].url), Client.connect(nodes[0].url))
    await watcher.subscribe(channel)
    start = await dropping.subscribe(channel)
    assert start["offset"] == 0
    async with tidings.Publisher(REDIS_URL, prefix) as publisher:
        for n in range(3):
            await publisher.abroadcast_channel(n, channel)
        got = await dropping.messages(3)
        assert numbers(got) == [0, 1, 2] and got[2][2] == {"offset": 3, "epoch": start["epoch"]}
        await dropping.close()
        for n in range(3, 23):  # missed: 20 messages
            await publisher.abroadcast_channel(n, channel)

        back = await Client.connect(nodes[1].url)
        sending = asyncio.ensure_future(_publish_range(publisher, channel, 23, 43))  # live meanwhile
        answer = await back.subscribe(channel, got[2][2])
        assert answer["recovered"] is True
        await sending
        assert numbers(await back.messages(40)) == list(range(3, 43))  # in order, no gap, no duplicate
        await back.nothing()
        assert numbers(await watcher.messages(43)) == list(range(43))

        unknown = await Client.connect(nodes[1].url)
        answer = await unknown.subscribe(channel, {"offset": 1, "epoch": "another"})
        assert (answer["recovered"], answer["reason"]) == (False, "epoch changed")
        await unknown.nothing()
    await asyncio.gather(watcher.close(), back.close(), unknown.close())


async def _publish_range(publisher: tidings.Publisher, channel: str, start: int, stop: int) -> None:
    for n in range(start, stop):
        await publisher.abroadcast_channel(n, channel)


async def test_presence_across_nodes(nodes: list[TidingsProcess], prefix: str) -> None:
    channel = f"pres-{uuid.uuid4().hex[:8]}"
    ada, bob = await asyncio.gather(Client.connect(nodes[0].url), Client.connect(nodes[1].url))
    await ada.call("iam", {"name": "ada"})
    await bob.call("iam", {"name": "bob"})
    await ada.subscribe(channel)
    await bob.subscribe(channel)
    expected = {ada.session_id: {"name": "ada"}, bob.session_id: {"name": "bob"}}
    await told(ada, channel, expected)
    for client in (ada, bob):
        answer = await client.call("presence", channel)
        assert {m["session_id"]: m["info"] for m in answer["presence"]} == expected
    assert {m["session_id"] for m in await bob.call("whois", channel)} == set(expected)
    async with tidings.Publisher(REDIS_URL, prefix) as publisher:
        assert len(await publisher.apresence(channel)) == 2
        await bob.call("unsubscribe", channel)
        assert await notice(ada, channel) == {
            "count": 1,
            "joined": [],
            "left": [{"session_id": bob.session_id, "info": {"name": "bob"}}],
        }
        assert [m["session_id"] for m in await publisher.apresence(channel)] == [ada.session_id]
    await asyncio.gather(ada.close(), bob.close())


async def test_redis_restarted_mid_stream_loses_nothing_of_a_history_channel(own_redis: OwnRedis) -> None:
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    server = TidingsProcess(APP, None, *broker_args("restart:", own_redis.url)).start()
    try:
        client = await Client.connect(server.url)
        await client.subscribe(channel)
        async with tidings.Publisher(own_redis.url, "restart:") as publisher:
            for n in range(10):
                await publish_surely(publisher, n, channel)
            assert numbers(await client.messages(10)) == list(range(10))
            own_redis.stop()
            own_redis.start()  # empty: a new epoch; the node subscribes again and catches up
            for n in range(10, 40):
                await publish_surely(publisher, n, channel)
        got = await client.messages(30)
        assert numbers(got) == list(range(10, 40))  # in order, nothing lost, nothing twice
        assert [args[2]["offset"] for args in got] == list(range(1, 31))
        await client.nothing()
        assert await client.call("publish", channel, "from the node") == {"reached": 1}
        assert numbers(await client.messages(1)) == ["from the node"]
        await client.close()
    finally:
        server.stop()


async def test_after_a_redis_restart_a_new_publisher_knows_the_history_channels(own_redis: OwnRedis) -> None:
    """The servers' options key, lost with Redis, is written again when a server reconnects: a
    publisher made afterwards gives history channels' messages their positions, and a client that
    missed some recovers them. The node's members stay in presence through a publisher's read."""
    history, here = f"hist-{uuid.uuid4().hex[:8]}", f"pres-{uuid.uuid4().hex[:8]}"
    server = TidingsProcess(APP, None, *broker_args("options:", own_redis.url)).start()
    store = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        watcher, dropping = await asyncio.gather(Client.connect(server.url), Client.connect(server.url))
        for client in (watcher, dropping):
            await client.subscribe(history)
        await watcher.subscribe(here)
        await told(watcher, here, {watcher.session_id: {}})
        own_redis.stop()
        own_redis.start()  # empty: no options key, no presence, no alive key
        # The node enters its members again once it is back (it wrote its options before them).
        await until(lambda: store.exists(f"options:presence:{here}"), what="the server's members are back")
        async with tidings.Publisher(own_redis.url, "options:") as publisher:
            assert [m["session_id"] for m in await publisher.apresence(here)] == [watcher.session_id]
            await publisher.abroadcast_channel(0, history)
            [message] = await dropping.messages(1)
            assert len(message) == 3, "no position: the publisher did not know the channel keeps a history"
            position = message[2]
            await dropping.close()
            for n in range(1, 4):
                await publisher.abroadcast_channel(n, history)
        back = await Client.connect(server.url)
        assert (await back.subscribe(history, position))["recovered"] is True
        assert numbers(await back.messages(3)) == [1, 2, 3]
        assert await watcher.event() == ["lagging", here]  # a channel without history may have lost some
        assert numbers(await watcher.messages(4)) == [0, 1, 2, 3]
        await asyncio.gather(watcher.close(), back.close())
    finally:
        await store.aclose()
        server.stop()


async def test_a_publisher_without_the_servers_options_says_so_once_and_looks_again(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = new_prefix()  # no server has ever written its options under it
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    async with tidings.Publisher(REDIS_URL, prefix) as publisher:
        with caplog.at_level(logging.WARNING, "tidings.broker"):
            for _ in range(2):
                with pytest.raises(tidings.NoSocket):
                    await publisher.abroadcast_channel("lost", channel)
        warnings = [r.getMessage() for r in caplog.records if "no server's settings" in r.getMessage()]
        assert len(warnings) == 1 and repr(channel) in warnings[0], warnings
        assert not redis_client.exists(f"{prefix}history:{channel}")  # no position, no history

        redis_client.set(f"{prefix}options", json.dumps({"history": [["^hist-", 50, 60]], "presence": []}))
        with pytest.raises(tidings.NoSocket):
            await publisher.abroadcast_channel("kept", channel)
        assert redis_client.xlen(f"{prefix}history:{channel}") == 1  # found now: the message has a position
    redis_client.delete(f"{prefix}options", f"{prefix}history:{channel}", f"{prefix}meta:{channel}")


async def test_a_killed_worker_s_clients_recover_elsewhere_and_its_presence_goes(own_redis: OwnRedis) -> None:
    history, here = f"hist-{uuid.uuid4().hex[:8]}", f"pres-{uuid.uuid4().hex[:8]}"
    args = broker_args("kill:", own_redis.url)
    doomed, survivor = TidingsProcess(APP, None, *args), TidingsProcess(APP, None, *args)
    doomed.start()
    survivor.start()
    try:
        victim, witness = await asyncio.gather(Client.connect(doomed.url), Client.connect(survivor.url))
        for client in (victim, witness):
            await client.subscribe(history)
            await client.subscribe(here)
        await told(victim, here, {victim.session_id: {}, witness.session_id: {}})
        async with tidings.Publisher(own_redis.url, "kill:") as publisher:
            await publisher.abroadcast_channel("before", history)
            [[_, _, position]] = await victim.messages(1)
            assert process(doomed).poll() is None
            process(doomed).send_signal(signal.SIGKILL)
            process(doomed).wait(10)
            for n in range(15):
                await publisher.abroadcast_channel(n, history)

            back = await Client.connect(survivor.url)  # the client reconnects to the other worker
            assert (await back.subscribe(history, position))["recovered"] is True
            assert numbers(await back.messages(15)) == list(range(15))

            async def gone() -> bool:
                members = await publisher.apresence(here)
                return [m["session_id"] for m in members] == [witness.session_id]

            await until(gone, timeout=5, what="the killed worker's presence entries expire")
        await asyncio.gather(victim.close(), witness.close(), back.close())
    finally:
        for server in (doomed, survivor):
            with contextlib.suppress(Exception):
                server.stop()


def process(server: TidingsProcess) -> subprocess.Popen[bytes]:
    assert server.process is not None
    return server.process
