"""The Redis broker on a Redis Cluster (``redis+cluster://``), with sharded pub/sub.

A cluster of three masters and a replica of each, redis-servers of the test's own on loopback ports
(``redis-server --cluster-enabled yes``, ``redis-cli --cluster create``); two `tidings run` nodes on
it, clients on both, channels whose slots are on every master; one master SIGKILLed mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

import tidings
from tests.brokers.clients import Client, notice, told
from tests.brokers.cluster import APP, Cluster, broker_args, running_nodes, until
from tests.brokers.test_http_api import KEY, api
from tests.brokers.test_lagging import caught_up_and_lagged, flood_while_blocked
from tests.brokers.test_outage import clients, messages, subscribe
from tests.brokers.test_presence_leave import joined, member, view
from tests.brokers.test_recovery import process
from tests.serving import ROOT, free_port
from tidings.brokers import broker_from
from tidings.brokers.redis import RedisBroker
from tidings.brokers.redis.connection import RedisConnection, parse_cluster_url
from tidings.errors import BrokerError

PREFIX = "cluster:"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(tmp_path)
    try:
        group.start()
        deadline = time.monotonic() + 60
        while not group.ready():
            assert time.monotonic() < deadline, "the cluster did not come up within 60 s"
            time.sleep(0.2)
        yield group
    finally:
        group.stop()


def topic(kind: str, name: str) -> str:
    """The topic of a channel (or namespace, node) on a Redis Cluster under :data:`PREFIX`."""
    return f"{PREFIX}{kind}:{{{name}}}"


def one_per_master(group: Cluster, stem: str) -> list[str]:
    """Channel names ``<stem>-<n>`` whose slots are on different masters, one for each master."""
    names: dict[int, str] = {}
    for number in range(1000):
        name = f"{stem}-{number}"
        names.setdefault(group.owner(topic("channel", name)), name)
        if len(names) == len(group.masters()):
            return list(names.values())
    raise AssertionError("no channel names on every master")


async def test_nodes_share_channels_on_every_shard_over_sharded_pub_sub(cluster: Cluster) -> None:
    """Channels on each of the three masters, a history channel among them, a broadcast to the
    namespace and a send to a session, across two nodes; each channel's messages go to its master
    only, as shard messages (a SUBSCRIBE to its topic on any master sees nothing)."""
    stem = uuid.uuid4().hex[:6]
    plain, history = one_per_master(cluster, f"c{stem}"), one_per_master(cluster, f"hist-{stem}")
    odd = f"hist-}}{stem}"  # a name that would end the hash tag early: tagged by its digest
    channels = [*plain, *history, odd]
    with running_nodes(PREFIX, 2, cluster.url, APP) as nodes:
        first, second = [await Client.connect(node.url) for node in nodes]
        for client in (first, second):
            for channel in channels:
                await client.subscribe(channel)
        # Every master holds the subscriptions of its channels, from both nodes, and no other's.
        masters = list(cluster.masters())
        for channel in plain:
            owner = cluster.owner(topic("channel", channel))
            for port in masters:
                with redis.Redis(port=port) as master:
                    shard = master.execute_command("PUBSUB", "SHARDCHANNELS", f"{PREFIX}channel:*")
                    assert (topic("channel", channel).encode() in shard) is (port == owner)
        # Someone SUBSCRIBEd (not SSUBSCRIBEd) to the topics on every master hears nothing of them.
        eavesdroppers = [redis.Redis(port=port).pubsub() for port in masters]
        for eavesdropper in eavesdroppers:
            eavesdropper.subscribe(*(topic("channel", channel) for channel in channels))
        for number, channel in enumerate(channels):
            assert await first.call("publish", channel, number) == {"reached": 2}
        for client in (first, second):
            got = await client.messages(len(channels))
            position = got[len(plain)][2]
            assert [message[0] for message in got] == list(range(len(channels)))
            assert [message[1] for message in got] == channels
            assert [len(message) for message in got] == [2] * len(plain) + [3] * (len(history) + 1)
        for eavesdropper in eavesdroppers:
            heard = [eavesdropper.get_message(timeout=0.2) for _ in range(len(channels) + 1)]
            assert {message["type"] for message in heard if message} == {"subscribe"}
            eavesdropper.close()
        # A history channel's stream and meta are in its topic's slot.
        for channel in history:
            slot = key_slot(topic("channel", channel).encode())
            assert key_slot(f"{PREFIX}history:{{{channel}}}".encode()) == slot
            with cluster.client() as client:
                assert client.exists(f"{PREFIX}history:{{{channel}}}", f"{PREFIX}meta:{{{channel}}}") == 2
        # A namespace's broadcast and a send to a session on the other node.
        assert await second.call("broadcast", {"to": "everyone"}) == {"reached": 2}
        assert await first.messages(1) == [[{"to": "everyone"}]]
        assert await second.messages(1) == [[{"to": "everyone"}]]
        assert await first.call("send_to", second.session_id, {"to": "you"}) == {"reached": 1}
        assert await second.messages(1) == [[{"to": "you"}]]
        await first.nothing()
        # A client's history, recovered from before its message, and after an epoch it never had.
        late = await Client.connect(nodes[1].url)
        answer = await late.subscribe(history[0], {"offset": 0, "epoch": position["epoch"]})
        assert (answer["recovered"], answer["offset"]) == (True, 1)
        assert await late.messages(1) == [[len(plain), history[0], position]]
        answer = await late.subscribe(history[1], {"offset": 0, "epoch": "stale"})
        assert (answer["recovered"], answer["reason"]) == (False, "epoch changed")
        for client in (first, second, late):
            await client.close()


async def test_a_master_killed_mid_stream(cluster: Cluster) -> None:
    """History channels on each master, clients on both nodes, a publisher sending to them in turn;
    the master of one channel is SIGKILLed mid-stream and its replica takes over. Both clients get
    every message of every channel, once and in order (those published while no master owned the
    slot come out of the history when the nodes subscribed on the new master); the channel of the
    killed master starts a new epoch there, the others keep theirs; sends and broadcasts go on."""
    channels = one_per_master(cluster, f"hist-{uuid.uuid4().hex[:6]}")
    victim = cluster.owner(topic("channel", channels[0]))
    with running_nodes(PREFIX, 2, cluster.url, "tests/brokers/buffer_app.py:app") as nodes:
        async with clients(*nodes) as (first, second):
            for client in (first, second):
                for channel in channels:
                    assert (await subscribe(client, channel))["ok"] is True
            total = 150
            async with tidings.Publisher(cluster.url, PREFIX) as publisher:
                for number in range(total):
                    if number == 45:
                        cluster.server(victim).kill()
                    channel = channels[number % len(channels)]
                    with contextlib.suppress(tidings.NoSocket):  # before the nodes subscribed there
                        await publisher.abroadcast_channel(number, channel)
                    await asyncio.sleep(0.02)
            await until(lambda: cluster.taken_over(victim), 60, "a replica took over")
            for client in (first, second):
                got = await messages(client, total)
                for index, channel in enumerate(channels):
                    mine = [(message, position) for message, name, position in got if name == channel]
                    numbers = [message for message, _ in mine]
                    assert numbers == list(range(index, total, len(channels)))  # all, once, in order
                    epochs = [position["epoch"] for _, position in mine]
                    if index == 0:  # the killed master's: a new epoch from the failover on
                        assert epochs[0] != epochs[-1]
                        assert len(set(epochs)) == 2
                    else:
                        assert len(set(epochs)) == 1
            # Live again, every way: channels, the namespace, a session on the other node.
            for channel in channels:
                await first.call("publish", channel, "after")
            for client in (first, second):
                got = await messages(client, len(channels))
                assert sorted(name for _, name, _ in got) == sorted(channels)
    with running_nodes(PREFIX, 2, cluster.url, APP) as nodes:
        one, other = [await Client.connect(node.url) for node in nodes]
        assert await other.call("broadcast", "all") == {"reached": 2}
        assert await one.call("send_to", other.session_id, "you") == {"reached": 1}
        assert await other.messages(2) == [["all"], ["you"]]
        await one.close()
        await other.close()


async def test_sends_follow_their_topics_to_the_new_master(cluster: Cluster) -> None:
    """The master of a node's own topic is killed: the node subscribes it on the master that takes
    over its slot, and sends to its sessions reach them again."""
    with running_nodes(PREFIX, 2, cluster.url, APP) as nodes:
        first, second = [await Client.connect(node.url) for node in nodes]
        victim = cluster.owner(topic("node", second.node))
        cluster.server(victim).kill()
        await until(lambda: cluster.taken_over(victim), 60, "a replica took over")

        async def reached() -> bool:
            return bool(await first.call("send_to", second.session_id, "you") == {"reached": 1})

        await until(reached, 60, "the node's topic is subscribed on the new master")
        assert await second.messages(1) == [["you"]]  # those sent before reached no one (0)
        assert await first.call("broadcast", "all") == {"reached": 2}
        assert await second.messages(1) == [["all"]]
        await first.close()
        await second.close()


async def test_a_manual_failover_moves_the_subscriptions_without_a_loss(cluster: Cluster) -> None:
    """``CLUSTER FAILOVER`` on a channel's replica: the old master stays up, and unsubscribes the
    shard channels of the slots it gave away itself; the nodes subscribe them on the new master.
    Messages published before and after reach both clients, the history in a new epoch after."""
    channel = f"hist-{uuid.uuid4().hex[:6]}"
    master = cluster.owner(topic("channel", channel))
    [replica] = cluster.masters()[master]
    with running_nodes(PREFIX, 2, cluster.url, APP) as nodes:
        first, second = [await Client.connect(node.url) for node in nodes]
        for client in (first, second):
            await client.subscribe(channel)
        assert await first.call("publish", channel, "before") == {"reached": 2}
        with redis.Redis(port=replica) as promoted:
            promoted.execute_command("CLUSTER", "FAILOVER")
        await until(lambda: cluster.owner(topic("channel", channel)) == replica, 60, "the replica took over")

        async def reached() -> bool:
            return bool(await first.call("publish", channel, "after") == {"reached": 2})

        await until(reached, 60, "both nodes subscribed on the new master")
        for client in (first, second):
            got = await client.messages(2)
            assert [message[0] for message in got[:1]] == ["before"]
            assert {message[0] for message in got[1:]} == {"after"}
            assert got[0][2]["epoch"] != got[1][2]["epoch"]
        await first.close()
        await second.close()


async def test_presence_and_the_leave_of_a_killed_node(cluster: Cluster) -> None:
    """Presence on a cluster: who is in a channel, from every node; a killed node's members are
    announced as gone once, on every other node, by the reaper that claimed it (slot by slot)."""
    room, lobby = one_per_master(cluster, f"pres-{uuid.uuid4().hex[:6]}")[:2]
    with running_nodes(PREFIX, 3, cluster.url, APP) as (doomed, one, other):
        ada = await joined(await Client.connect(one.url), "ada", room, lobby)
        bob = await joined(await Client.connect(other.url), "bob", room)
        cat = await joined(await Client.connect(doomed.url), "cat", room, lobby)
        everyone = view((ada, "ada"), (bob, "bob"), (cat, "cat"))
        await told(ada, room, everyone)
        await told(ada, lobby, view((ada, "ada"), (cat, "cat")))
        await told(bob, room, everyone)
        answer = await bob.call("presence", room)
        assert sorted(m["session_id"] for m in answer["presence"]) == sorted(
            [ada.session_id, bob.session_id, cat.session_id]
        )

        process(doomed).kill()
        process(doomed).wait(10)

        gone = {"joined": [], "left": [member(cat, "cat")]}
        notices = {event[1]: event[2] for event in [await ada.event(), await ada.event()]}
        assert notices == {room: {**gone, "count": 2}, lobby: {**gone, "count": 1}}
        assert await notice(bob, room) == notices[room]
        await asyncio.gather(ada.nothing(2), bob.nothing(2))  # both reap: nobody is told twice
        answer = await ada.call("presence", room)
        assert sorted(m["session_id"] for m in answer["presence"]) == sorted([ada.session_id, bob.session_id])
        await asyncio.gather(ada.close(), bob.close(), cat.close())


async def test_a_blocked_node_sheds_the_backlog_of_its_connection_to_a_master(cluster: Cluster) -> None:
    """The backlog watch on a cluster: a node whose loop is blocked while a publisher floods a
    channel drops its connection to that channel's master past ``redis_max_backlog`` (256 KiB in
    tests/brokers/lagging_app.py); its history channel there catches up, the other one lags."""
    history = f"hist-{uuid.uuid4().hex[:8]}"
    master = cluster.owner(topic("channel", history))
    plain = next(
        name
        for name in (f"room-{uuid.uuid4().hex[:8]}" for _ in range(1000))
        if cluster.owner(topic("channel", name)) == master
    )
    with running_nodes(PREFIX, 1, cluster.url, "tests/brokers/lagging_app.py:app") as [node]:
        client = await Client.connect(node.url)
        await client.subscribe(history)
        await client.subscribe(plain)
        async with tidings.Publisher(cluster.url, PREFIX) as publisher:
            await flood_while_blocked(client, publisher, history, plain)
        await caught_up_and_lagged(client, history, plain)
        assert await client.call("counts") == [1, 1]
        await client.close()


async def test_the_http_api_of_one_node_counts_and_disconnects_on_the_other(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP server API's questions to every node travel on one shard (``all:{nodes}``): SPUBLISH
    counts the nodes there, as PUBLISH does on one Redis."""
    monkeypatch.setenv("TIDINGS_API_KEY", KEY)  # the nodes take their api_key from it
    with running_nodes(PREFIX, 2, cluster.url, APP) as (a, b):
        on_b, on_a = await Client.connect(b.url), await Client.connect(a.url)
        for client in (on_b, on_a):
            await client.subscribe("api-room")
        await on_b.subscribe("api-b-only")
        channels = await api(a, "channels", {"prefix": "api-"})
        assert channels == {
            "channels": [
                {"channel": "api-b-only", "subscribers": 1},
                {"channel": "api-room", "subscribers": 2},
            ]
        }
        assert await api(a, "disconnect", {"session_id": on_b.session_id}) == {"disconnected": 1}
        assert await on_b.raw.receive() == "41"
        assert await api(b, "channels", {"prefix": "api-"}) == {
            "channels": [{"channel": "api-room", "subscribers": 1}]
        }
        await on_a.close()
        await on_b.close()


async def test_refusals() -> None:
    for bad in ("redis+cluster://h1:x", "redis+cluster://h1:7000/2", "redis+cluster://:7000"):
        with pytest.raises(ValueError, match=r"no cluster node|only database 0"):
            RedisBroker(bad)
    with pytest.raises(ValueError, match="cannot have braces"):
        RedisBroker("redis+cluster://127.0.0.1:7000", prefix="{app}:")
    assert parse_cluster_url("redis+cluster://ada:s%40cret@h1,h2:7001/0") == (
        [("h1", 6379), ("h2", 7001)],
        "ada",
        "s@cret",
    )
    assert isinstance(broker_from("redis+cluster://127.0.0.1:7000"), RedisBroker)
    assert (
        run(APP, "redis+cluster://h1:x")
        == "tidings: redis+cluster://h1:x: 'h1:x' is no cluster node host[:port]\n"
    )
    url = f"redis+cluster://127.0.0.1:{free_port()}"  # nothing listens there
    assert run(APP, url).startswith(f"tidings: cannot reach the Redis broker at {url}: ")
    # Connection state recovery keeps one log of every channel: refused before Redis is asked.
    refusal = "connection state recovery is not available on a Redis Cluster"
    assert run("tests/brokers/recovery_app.py:app", url).startswith(f"tidings: {refusal}")
    server = tidings.Server(broker=url, connection_state_recovery=60)
    with pytest.raises(BrokerError, match=refusal):
        await server.socketio.hub.broker.start()


def run(app: str, url: str) -> str:
    """What `tidings run app --broker url` says when it exits at once, in one line."""
    command = [
        sys.executable,
        "-m",
        "tidings",
        "run",
        app,
        "--port",
        str(free_port()),
        *broker_args(PREFIX, url),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_names_of_one_channel_share_a_slot() -> None:
    connection = RedisConnection(RedisBroker(), "redis+cluster://h:1", "p:", 1.0)
    for name in ("news", "a}b", "}", "{x}", "ü"):
        slots = {key_slot(connection.key(kind, name).encode()) for kind in ("history", "meta", "presence")}
        assert slots == {key_slot(connection.name("channel", name))}, name
    assert connection.name("channel", "news") == b"p:channel:{news}"
    plain = RedisConnection(RedisBroker(), "redis://h:1/0", "p:", 1.0)
    assert plain.name("channel", "a}b") == b"p:channel:a}b"
    assert plain.key("history", "news") == "p:history:news"
