"""The Redis broker for real: several `tidings run` processes on one Redis, clients on each of them.

Uses the machine's Redis at 127.0.0.1:6379 (never flushed or stopped: tidings keeps no keys, and each
run uses a prefix of its own), and a private redis-server for the reconnect test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import socketio
from redis.asyncio.client import Pipeline
from websockets.asyncio.client import connect as ws_connect

import tidings
from tests.brokers.clients import Client
from tests.brokers.cluster import APP, REDIS_URL, OwnRedis, broker_args, running_nodes, until
from tests.serving import ROOT, TidingsProcess, free_port
from tidings.brokers.redis import RedisBroker
from tidings.message import Outgoing


@pytest.fixture(scope="module")
def nodes(prefix: str) -> Iterator[list[TidingsProcess]]:
    """Three `tidings run` processes on different ports sharing channels through Redis."""
    with running_nodes(prefix, 3) as servers:
        yield servers


@pytest.fixture
def publisher(prefix: str) -> Iterator[tidings.Publisher]:
    with tidings.Publisher(REDIS_URL, prefix) as publisher:
        yield publisher


def channel_name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


async def connect(*servers: TidingsProcess) -> list[Client]:
    return list(await asyncio.gather(*(Client.connect(server.url) for server in servers)))


async def close(clients: list[Client]) -> None:
    await asyncio.gather(*(client.close() for client in clients))


async def fence(publisher: tidings.Publisher, channel: str, clients: list[Client]) -> None:
    """Publish a marker: the next thing each client gets must be it (nothing else came before)."""
    mark = {"fence": uuid.uuid4().hex}
    await publisher.abroadcast_channel(mark, channel)
    for client in clients:
        assert await client.event() == ["message", mark, channel]


async def test_a_burst_reaches_every_subscriber_on_every_node_once_in_order(
    nodes: list[TidingsProcess], publisher: tidings.Publisher
) -> None:
    count = 10_000
    channel = channel_name("burst")
    sender, *receivers = await connect(nodes[0], nodes[0], nodes[1], nodes[2])
    assert len({client.node for client in [sender, *receivers]}) == 3
    for client in [sender, *receivers]:
        await client.subscribe(channel)
    url = nodes[2].url.replace("http", "ws") + f"/ws?channel={channel}"
    async with ws_connect(url, compression=None) as plain:  # a plain WebSocket, on the third node
        assert await plain.recv() == "subscribed"

        await sender.emit("burst", channel, count)  # socket.broadcast_channel, count times
        expected = [[number, channel] for number in range(count)]
        for receiver in receivers:
            assert await receiver.messages(count) == expected
        assert [await plain.recv() for _ in range(count)] == [str(number) for number in range(count)]
        await fence(publisher, channel, [sender, *receivers])  # no duplicate; the sender got none
    await close([sender, *receivers])


async def test_the_sender_is_left_out_on_its_node_only(
    nodes: list[TidingsProcess], publisher: tidings.Publisher
) -> None:
    channel = channel_name("exclude")
    sender, same_node, other_node = clients = await connect(nodes[0], nodes[0], nodes[1])
    for client in clients:
        await client.subscribe(channel)

    await sender.emit("tell", "broadcast_channel", "not you", channel)
    assert await same_node.messages(1) == await other_node.messages(1) == [["not you", channel]]
    await fence(publisher, channel, clients)

    await sender.emit("tell", "send_and_broadcast_channel", "all of us", channel)
    for client in clients:
        assert await client.messages(1) == [["all of us", channel]]

    await sender.emit("tell", "broadcast", "namespace, not you")  # every other socket of "/"
    assert await same_node.messages(1) == await other_node.messages(1) == [["namespace, not you"]]
    await fence(publisher, channel, clients)
    await close(clients)


async def test_send_reaches_a_session_on_another_node(nodes: list[TidingsProcess]) -> None:
    target, sender = await connect(nodes[0], nodes[1])
    assert await sender.call("send_to", target.session_id, {"to": "you"}) == {"reached": 1}
    assert await target.messages(1) == [[{"to": "you"}]]

    unknown_node = "nobody00." + target.session_id.partition(".")[2]
    assert "no_socket" in await sender.call("send_to", unknown_node, "x")
    assert "no_socket" in await sender.call("send_to", "not-a-session-id", "x")
    await target.close()
    # Gone from its own node: that node knows at once.
    same_node = await Client.connect(nodes[0].url)
    assert "no_socket" in await same_node.call("send_to", target.session_id, "x")
    await close([sender, same_node])


async def test_out_of_band_from_a_process_that_serves_nothing(
    nodes: list[TidingsProcess], publisher: tidings.Publisher, prefix: str
) -> None:
    channel = channel_name("oob")
    clients = await connect(nodes[0], nodes[1], nodes[1])
    for client in clients:
        await client.subscribe(channel)

    assert publisher.broadcast_channel({"n": 1}, channel) == 2  # two nodes took it
    assert await publisher.abroadcast_channel({"n": 2}, channel) == 2
    for client in clients:
        assert await client.messages(2) == [[{"n": 1}, channel], [{"n": 2}, channel]]
    assert await publisher.asend(clients[1].session_id, "just you") == 1
    assert await clients[1].messages(1) == [["just you"]]
    assert publisher.broadcast("everyone") >= 2
    for client in clients:
        assert await client.messages(1) == [["everyone"]]

    async_publisher = tidings.AsyncPublisher(REDIS_URL, prefix)
    assert await async_publisher.broadcast_channel([1, "two"], channel) == 2
    await async_publisher.aclose()
    for client in clients:
        assert await client.messages(1) == [[[1, "two"], channel]]

    # The command line: MESSAGE is JSON if it parses, else a string.
    for text, message in [('{"a": [1, 2]}', {"a": [1, 2]}), ("hello there", "hello there")]:
        result = await asyncio.to_thread(tidings_publish, prefix, channel, text)
        assert result.returncode == 0, result.stderr
        assert "2 server process(es)" in result.stdout
        for client in clients:
            assert await client.messages(1) == [[message, channel]]

    # A WSGI view of a server publishes out of band too.
    query = {"channel": channel, "message": "v"}
    answer = await asyncio.to_thread(httpx.get, f"{nodes[2].url}/publish", params=query)
    assert answer.json() == {"reached": 2}
    for client in clients:
        assert await client.messages(1) == [["v", channel]]
    await close(clients)


async def test_emit_reaches_channels_and_sessions_on_every_node_once(
    nodes: list[TidingsProcess], publisher: tidings.Publisher, prefix: str
) -> None:
    one, two = channel_name("emit"), channel_name("emit")
    clients = await connect(nodes[0], nodes[1], nodes[1], nodes[2])
    a, b, c, d = clients
    await a.subscribe(one)
    for channel in (one, two):
        await b.subscribe(channel)
    await c.subscribe(two)

    # One channel: its topic, and the nodes with members in it.
    assert publisher.emit("price", 101.5, to=one) == 2
    # Several targets: one message every node takes (3 of them); each socket gets it once, b though it
    # is in both channels and named, d by its session id alone; c is left out.
    everyone = [one, two, b.session_id, d.session_id]
    assert await publisher.aemit("news", {"n": 1}, to=everyone, exclude=c.session_id) == 3
    # The members of a channel left out: b is in two.
    assert publisher.emit("quote", to=one, exclude=two) == 2
    async_publisher = tidings.AsyncPublisher(REDIS_URL, prefix)
    assert await async_publisher.emit("tick", [1], to=[c.session_id, d.session_id]) == 3
    await async_publisher.aclose()
    with pytest.raises(tidings.NoSocket, match="no server has a socket in channel"):
        publisher.emit("price", 1, to=channel_name("nobody"))
    # From a socket on the first node: everyone in one and d, but itself. Then, the same way (so in
    # order after it), a fence to all.
    await a.emit("emit_to", "hello", ["there"], [one, d.session_id], True)
    fence = ["fence", uuid.uuid4().hex]
    await a.emit("emit_to", fence[0], fence[1:], [client.session_id for client in clients])
    counts = (4, 4, 2, 4)
    got = [
        [await client.event() for _ in range(count)] for client, count in zip(clients, counts, strict=True)
    ]
    news, tick = ["news", {"n": 1}], ["tick", [1]]
    assert got == [  # in each client's order, and nothing before the fence but these
        [["price", 101.5], news, ["quote"], fence],
        [["price", 101.5], news, ["hello", "there"], fence],
        [tick, fence],
        [news, tick, ["hello", "there"], fence],
    ]
    await close(clients)


async def test_binary_messages_cross_nodes(nodes: list[TidingsProcess], publisher: tidings.Publisher) -> None:
    channel = channel_name("binary")
    client = socketio.AsyncClient()
    received: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    client.on("message", lambda *args: received.put_nowait(args))
    await client.connect(nodes[1].url, transports=["websocket"], wait_timeout=10)
    assert await client.call("subscribe", channel, timeout=10) == {"ok": True}
    message = {"blob": b"\x00\x01\xff", "parts": [b"a", {"deep": b"b"}], "text": "t"}
    assert await publisher.abroadcast_channel(message, channel) == 1
    assert await asyncio.wait_for(received.get(), 10) == (message, channel)
    await client.disconnect()


async def test_no_socket_when_no_node_has_the_channel(
    nodes: list[TidingsProcess], publisher: tidings.Publisher, prefix: str
) -> None:
    channel = channel_name("empty")
    client = await Client.connect(nodes[0].url)
    assert "no socket is subscribed" in (await client.call("publish", channel, 1))["no_socket"]
    assert "no socket is subscribed" in (await client.call("apublish", channel, 1))["no_socket"]
    with pytest.raises(tidings.NoSocket):
        await publisher.abroadcast_channel(1, channel)
    result = await asyncio.to_thread(tidings_publish, prefix, channel, "1")
    assert result.returncode == 1
    assert result.stderr.strip() == f"tidings: no server has a socket in channel {channel!r}"
    await client.close()


async def test_a_node_subscribes_only_to_the_channels_its_sockets_are_in(
    nodes: list[TidingsProcess], redis_client: redis.Redis, prefix: str, publisher: tidings.Publisher
) -> None:
    first, second = channel_name("a"), channel_name("b")

    def subscribers(channel: str) -> int:
        [(_, count)] = redis_client.pubsub_numsub(f"{prefix}channel:{channel}")
        return int(count)

    def channels() -> set[str]:
        names = redis_client.pubsub_channels(f"{prefix}channel:*")
        return {name.decode().removeprefix(f"{prefix}channel:") for name in names}

    a, b, c = await connect(nodes[0], nodes[1], nodes[0])
    await a.subscribe(first)
    await b.subscribe(second)
    assert (subscribers(first), subscribers(second)) == (1, 1)
    assert {first, second} <= channels()
    await c.subscribe(first)  # a second socket on the same node: no second subscription
    await c.subscribe(second)
    assert (subscribers(first), subscribers(second)) == (1, 2)
    assert publisher.broadcast_channel("x", second) == 2

    await a.call("unsubscribe", first)  # c is still in it on that node
    assert subscribers(first) == 1
    await c.close()  # the last one there leaves: 1 -> 0, the node unsubscribes
    await until(lambda: subscribers(first) == 0 and subscribers(second) == 1, 5)
    assert first not in channels()
    with pytest.raises(tidings.NoSocket):
        publisher.broadcast_channel("x", first)
    assert publisher.broadcast_channel("x", second) == 1
    await close([a, b])


async def test_module_level_sends_on_the_event_loop_and_in_a_process_without_a_server(
    nodes: list[TidingsProcess], prefix: str
) -> None:
    channel = channel_name("module")
    client = await Client.connect(nodes[1].url)
    await client.subscribe(channel)
    # On the server's loop the sync call cannot wait for Redis: queued in order, count 0, no NoSocket.
    assert await client.call("publish_on_loop", channel, "queued") == {"reached": 0}
    assert await client.call("publish_on_loop", channel + "-empty", "lost") == {"reached": 0}
    assert await client.messages(1) == [["queued", channel]]

    # A process that runs no server: tidings.broadcast_channel goes through TIDINGS_BROKER.
    script = "import sys, tidings; print(tidings.broadcast_channel({'from': 'script'}, sys.argv[1]))"
    env = {**os.environ, "TIDINGS_BROKER": REDIS_URL, "TIDINGS_BROKER_PREFIX": prefix}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, channel],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")
    assert await client.messages(1) == [[{"from": "script"}, channel]]
    await client.close()


def test_an_unreachable_redis_at_start_is_one_clear_line(prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "run", APP, "--port", str(free_port()), *broker_args(prefix, url)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.startswith(f"tidings: cannot reach the Redis broker at {url}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr

    published = tidings_publish(prefix, "any", "1", url)
    assert published.returncode == 1
    assert published.stderr.startswith(f"tidings: cannot reach the Redis broker at {url}: ")
    assert "Traceback" not in published.stderr


async def test_workers_share_channels_through_the_broker(redis_client: redis.Redis) -> None:
    prefix = f"tidings-test-{uuid.uuid4().hex[:12]}:"
    server = TidingsProcess(APP, None, "--workers", "2", *broker_args(prefix)).start()
    clients: list[Client] = []
    try:
        await until(lambda: len(redis_client.pubsub_channels(f"{prefix}node:*")) == 2, 15)
        channel = channel_name("workers")
        while len({client.node for client in clients}) < 2:  # the kernel picks the worker
            assert len(clients) < 40, "every connection landed on the same worker"
            clients.append(await Client.connect(server.url))
        for client in clients:
            await client.subscribe(channel)
        sender, *others = clients
        await sender.emit("tell", "broadcast_channel", "hello", channel)
        for client in others:
            assert await client.messages(1) == [["hello", channel]]
        async with tidings.Publisher(REDIS_URL, prefix) as publisher:
            assert await publisher.abroadcast_channel("end", channel) == 2
        for client in clients:
            assert await client.messages(1) == [["end", channel]]  # the sender got nothing before
    finally:
        await close(clients)
        server.stop()


async def test_a_node_reconnects_when_redis_comes_back(own_redis: OwnRedis) -> None:
    url = own_redis.url
    server = TidingsProcess(APP, None, *broker_args("reconnect:", url)).start()
    client = None
    try:
        client = await Client.connect(server.url)
        await client.subscribe("room")
        async with tidings.Publisher(url, "reconnect:") as publisher:
            assert await publisher.abroadcast_channel("before", "room") == 1
            assert await client.messages(1) == [["before", "room"]]
            own_redis.stop()
            own_redis.start()  # empty: the node must subscribe again by itself
            deadline = time.monotonic() + 15
            while True:
                try:
                    if await publisher.abroadcast_channel("after", "room") == 1:
                        break
                except (tidings.NoSocket, tidings.BrokerError):
                    pass
                assert time.monotonic() < deadline, "the node did not subscribe again"
                await asyncio.sleep(0.1)
        assert await client.event() == ["lagging", "room"]  # told it may have missed some
        assert await client.messages(1) == [["after", "room"]]
        assert await client.call("publish", "room", "from the node") == {"reached": 1}
        assert await client.messages(1) == [["from the node", "room"]]
    finally:
        if client is not None:
            await client.close()
        server.stop()


async def test_redis_max_batch_bounds_the_commands_of_one_pipeline(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []  # the commands of each pipeline sent to Redis
    execute = Pipeline.execute

    async def noting(pipeline: Pipeline, raise_on_error: bool = True) -> list[Any]:
        sizes.append(len(pipeline.command_stack))
        return await execute(pipeline, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", noting)
    for settings, expected in ((tidings.Settings(redis_max_batch=3), [3, 3, 1]), (tidings.Settings(), [7])):
        broker = RedisBroker(REDIS_URL, prefix)
        tidings.Server(settings=settings, broker=broker)  # the server hands its settings to the broker
        await broker.connect()
        sizes.clear()
        counts = [broker.broadcast(Outgoing(number), "/nobody") for number in range(7)]  # queued at once
        assert await asyncio.gather(*counts) == [0] * 7  # no node is in that namespace
        assert sizes == expected
        await broker.stop()


def tidings_publish(
    prefix: str, channel: str, message: str, url: str = REDIS_URL
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidings", "publish", *broker_args(prefix, url), channel, message]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
