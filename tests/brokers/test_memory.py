"""The broker interface on one process: the memory broker, the hub's membership hooks, choosing a broker,
and the out-of-band sends and their async twins through it."""

from __future__ import annotations

import asyncio

import pytest

import tidings
from tests.brokers.clients import Client
from tests.serving import ThreadedServer
from tidings.brokers import Kind, MemoryBroker, broker_from
from tidings.brokers.redis import RedisBroker
from tidings.hub import Hub
from tidings.message import Outgoing, Subscriber


class Member(Subscriber):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.subscriptions: dict[str, None] = {}
        self.got: list[tuple[object, str | None]] = []

    def deliver(self, outgoing: Outgoing) -> None:
        self.got.append((outgoing.message, outgoing.channel))


class Watching(MemoryBroker):
    """The memory broker, noting what the hub tells it about membership."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[str, str, str]] = []

    def first_joined(self, kind: Kind, name: str) -> None:
        self.told.append(("first", kind, name))

    def last_left(self, kind: Kind, name: str) -> None:
        self.told.append(("last", kind, name))


def test_the_hub_tells_its_broker_of_first_members_and_last_ones_only() -> None:
    broker = Watching()
    hub = Hub(broker)
    a, b = Member("a"), Member("b")
    hub.join(a, "/")
    hub.join(b, "/")
    hub.subscribe(a, "room")
    hub.subscribe(b, "room")
    hub.subscribe(a, "room")  # already in
    hub.subscribe(b, "other")
    assert broker.told == [
        ("first", "group", "/"),
        ("first", "channel", "room"),
        ("first", "channel", "other"),
    ]
    broker.told.clear()
    hub.unsubscribe(a, "room")  # b is still in it
    assert broker.told == []
    hub.leave(b, "/")
    assert broker.told == [("last", "channel", "room"), ("last", "channel", "other")]
    broker.told.clear()
    hub.leave(a, "/")
    assert broker.told == [("last", "group", "/")]


def test_the_memory_broker_hands_messages_to_its_hub_and_counts_sockets() -> None:
    hub = Hub()
    assert isinstance(hub.broker, MemoryBroker) and not hub.broker.remote
    a, b, c = Member("a"), Member("b"), Member("c")
    for member in (a, b, c):
        hub.join(member, "/")
    hub.subscribe(a, "room")
    hub.subscribe(b, "room")
    broker = hub.broker
    assert broker.publish(Outgoing("hi", "room"), exclude=a) == 1
    assert broker.publish(Outgoing("all", "room")) == 2
    assert broker.broadcast(Outgoing("ns"), "/", exclude=c) == 2
    assert broker.send(Outgoing("you"), "c") == 1
    assert broker.send(Outgoing("nobody"), "zz") == 0
    assert a.got == [("all", "room"), ("ns", None)]
    assert b.got == [("hi", "room"), ("all", "room"), ("ns", None)]
    assert c.got == [("you", None)]


def test_a_broker_serves_one_hub() -> None:
    broker = MemoryBroker()
    Hub(broker)
    with pytest.raises(ValueError, match="already serves another server"):
        Hub(broker)


def test_choosing_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_BROKER", raising=False)
    monkeypatch.delenv("TIDINGS_BROKER_PREFIX", raising=False)
    assert isinstance(broker_from(None), MemoryBroker)
    assert isinstance(broker_from("memory"), MemoryBroker)
    own = MemoryBroker()
    assert broker_from(own) is own
    redis = broker_from("redis://10.0.0.1:6380/2")  # nothing connects until the server starts
    assert isinstance(redis, RedisBroker) and redis.remote
    assert (redis.url, redis.prefix) == ("redis://10.0.0.1:6380/2", "tidings:")
    with pytest.raises(ValueError, match="unknown broker 'amqp://x'"):
        broker_from("amqp://x")

    monkeypatch.setenv("TIDINGS_BROKER", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("TIDINGS_BROKER_PREFIX", "myapp:")
    server = tidings.Server(handlers=tidings.Handlers())
    chosen = server.socketio.hub.broker
    assert isinstance(chosen, RedisBroker)
    assert (chosen.url, chosen.prefix) == ("redis://127.0.0.1:6379/1", "myapp:")
    memory = tidings.Server(handlers=tidings.Handlers(), broker="memory")
    assert isinstance(memory.socketio.hub.broker, MemoryBroker)


def test_session_ids_carry_the_node_whatever_the_broker() -> None:
    for broker in (RedisBroker("redis://127.0.0.1:6379/0", "p:"), MemoryBroker()):
        node, dot, rest = broker.new_session_id().partition(".")
        assert (len(node), dot, len(rest)) == (8, ".", 20) and node == broker.node_id
        assert broker.new_session_id() != broker.new_session_id()
    assert "secret" not in repr(RedisBroker("redis://:secret@127.0.0.1:6379/0"))


handlers = tidings.Handlers()


@handlers.on("publish_on_loop")
async def publish_on_loop(request, socket, context, channel):
    """The sync out-of-band send, called on the event loop itself: the count is exact."""
    return tidings.broadcast_channel("from the loop", channel)


async def test_out_of_band_sends_and_their_async_twins_count_sockets() -> None:
    app = tidings.Server(handlers=handlers)
    with ThreadedServer(app) as server:
        clients = list(await asyncio.gather(*(Client.connect(server.url) for _ in range(3))))
        for client in clients[:2]:
            await client.subscribe("room")

        # Another loop than the server's (this test's): the async twins wait without blocking it.
        assert await tidings.abroadcast_channel({"n": 1}, "room") == 2
        assert await tidings.abroadcast("everyone") == 3
        assert await tidings.asend(clients[2].session_id, "you") == 1
        with pytest.raises(tidings.NoSocket):
            await tidings.abroadcast_channel("x", "empty")
        with pytest.raises(tidings.NoSocket):
            await tidings.asend("gone", "x")
        assert await asyncio.to_thread(tidings.broadcast_channel, {"n": 2}, "room") == 2
        assert await clients[0].call("publish_on_loop", "room") == 2

        for client in clients[:2]:
            assert await client.messages(4) == [
                [{"n": 1}, "room"],
                ["everyone"],
                [{"n": 2}, "room"],
                ["from the loop", "room"],
            ]
        assert await clients[2].messages(2) == [["everyone"], ["you"]]

        app.emit("tick", 1, [2])  # Server.emit goes through the broker too
        for client in clients:
            assert await client.event() == ["tick", 1, [2]]

        with pytest.raises(RuntimeError, match="before it starts"):
            app.socketio.hub.use_broker(MemoryBroker())
        await asyncio.gather(*(client.close() for client in clients))
