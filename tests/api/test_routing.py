"""The one send path on its own: a Send routed through a real memory broker and hub to recording
subscribers, by channel, namespace and session id, with exclusion; encoding in the caller's thread; and what
a send that nobody took says."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tidings
from tidings.api.routing import HandOver, Send, emit, route
from tidings.brokers import Broker, Count, MemoryBroker
from tidings.channels import split_targets
from tidings.errors import NoSocket
from tidings.hub import Hub
from tidings.message import Outgoing, Subscriber, socketio_packets, wire_form


class Member(Subscriber):
    """A subscriber of namespace ``namespace`` that keeps the Socket.IO packets it is handed."""

    def __init__(self, session_id: str, namespace: str = "/") -> None:
        self.session_id = session_id
        self.namespace = namespace
        self.subscriptions: dict[str, None] = {}
        self.got: list[list[str | bytes]] = []

    def deliver(self, outgoing: Outgoing) -> None:
        self.got.append(outgoing.encoded(wire_form(self.namespace), socketio_packets, self.namespace))


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(MemoryBroker())
    await hub.start()  # binds this loop: hub.call and hub.post from other threads reach it
    yield hub
    await hub.stop()


def members(hub: Hub, *names: str, namespace: str = "/") -> list[Member]:
    joined = [Member(name, namespace) for name in names]
    for member in joined:
        hub.join(member, namespace)
    return joined


def unencodable(outgoing: Outgoing) -> list[str | bytes]:
    raise AssertionError("encoded on the loop: the caller's thread should have done it")


async def test_a_channel_send_reaches_its_members_but_the_excluded_one(hub: Hub) -> None:
    a, b, c = members(hub, "a", "b", "c")
    hub.subscribe(a, "room")
    hub.subscribe(b, "room")
    assert route(Send("hi", channel="room", exclude=a), hub.broker, hub.call) == 1
    assert (a.got, b.got, c.got) == ([], [['42["message","hi","room"]']], [])
    assert route(Send("all", channel="room"), hub.broker, hub.call) == 2
    assert route(Send("nobody", channel="empty"), hub.broker, hub.call) == 0


async def test_a_namespace_send_reaches_that_namespace_only(hub: Hub) -> None:
    a, b = members(hub, "a", "b", namespace="/chat")
    (c,) = members(hub, "c")
    assert route(Send(["x", 1], event="news", namespace="/chat", exclude=b), hub.broker, hub.call) == 1
    assert (a.got, b.got, c.got) == ([['42/chat,["news","x",1]']], [], [])
    assert route(Send("m"), hub.broker, hub.call) == 1
    assert c.got == [['42["message","m"]']]


async def test_a_session_send_reaches_the_one_socket(hub: Hub) -> None:
    a, b = members(hub, "a", "b")
    assert route(Send(b"\x01", session_id="b"), hub.broker, hub.call) == 1
    assert (a.got, b.got) == ([], [['451-["message",{"_placeholder":true,"num":0}]', b"\x01"]])
    assert route(Send("x", session_id="gone"), hub.broker, hub.call) == 0


async def test_the_count_comes_back_through_acall_and_from_another_thread(hub: Hub) -> None:
    members(hub, "a", "b")
    assert await route(Send("m"), hub.broker, hub.acall) == 2
    assert await asyncio.to_thread(route, Send("m"), hub.broker, hub.call) == 2


async def test_a_message_json_cannot_hold_raises_at_the_caller_and_is_not_handed_over(hub: Hub) -> None:
    (a,) = members(hub, "a")
    handed: list[Send] = []

    def run(hand_over: HandOver, broker: Broker, send: Send) -> None:
        handed.append(send)

    for send in (Send(object(), channel="room"), Send(object()), Send(object(), session_id="a")):
        with pytest.raises(TypeError):
            await asyncio.to_thread(route, send, hub.broker, run)
    assert (handed, a.got) == ([], [])


async def test_the_packets_are_built_in_the_callers_thread_so_the_loop_only_writes(hub: Hub) -> None:
    (a,) = members(hub, "a")
    threads: list[int] = []

    def run(hand_over: HandOver, broker: Broker, send: Send) -> Count:
        threads.append(threading.get_ident())
        # On the loop, asking for the packets must find them built: the encoder must not run.
        assert send.outgoing.encoded(wire_form("/"), unencodable) == ['42["message","m"]']
        return hub.call(hand_over, broker, send)

    caller = await asyncio.to_thread(lambda: (threading.get_ident(), route(Send("m"), hub.broker, run)))
    assert caller[1] == 1
    assert threads == [caller[0]]
    assert a.got == [['42["message","m"]']]


async def test_a_threads_sends_run_in_order_after_what_it_posted_before(hub: Hub) -> None:
    (a,) = members(hub, "a")

    def sends() -> int:
        hub.post(a.got.append, ["posted"])
        for number in range(5):
            route(Send(number), hub.broker, hub.post)
        return route(Send("last"), hub.broker, hub.call)

    assert await asyncio.to_thread(sends) == 1
    assert [packets[0] for packets in a.got] == [
        "posted",
        *[f'42["message",{number}]' for number in range(5)],
        '42["message","last"]',
    ]


async def test_a_send_that_nobody_took_says_what_it_was_sent_to(hub: Hub) -> None:
    members(hub, "a")
    assert [send.target for send in (Send(1, channel="c"), Send(1, session_id="s"), Send(1))] == [
        ("channel", "c"),
        ("session", "s"),
        ("namespace", "/"),
    ]
    with pytest.raises(NoSocket, match=r"^no socket is connected to namespace '/none'$"):
        await tidings.abroadcast("x", "/none")
    with pytest.raises(NoSocket, match=r"^no socket is subscribed to channel 'c'$"):
        await asyncio.to_thread(tidings.broadcast_channel, "x", "c")
    with pytest.raises(NoSocket, match=r"^no socket with session id 'gone'$"):
        await tidings.asend("gone", "x")
    assert await tidings.asend("a", "x") == 1


# -- emit: an event to several channels and session ids, less those it excludes ----------------------


def sid(name: str) -> str:
    """A session id of the form tidings hands out, named ``name``."""
    return f"node0000.{name:->20}"


async def test_an_emit_reaches_each_member_of_its_audience_once_with_one_encode(hub: Hub) -> None:
    a, b, c, d = members(hub, sid("a"), sid("b"), sid("c"), sid("d"))
    hub.subscribe(a, "one")
    hub.subscribe(b, "one")
    hub.subscribe(b, "two")
    to = ["one", "two", sid("b"), sid("c"), sid("gone")]
    send = emit("news", ["hi", b"\x00"], to)
    assert send.target == ("audience", repr(["one", "two", sid("b"), sid("c"), sid("gone")]))
    assert route(send, hub.broker, hub.call) == 3
    assert a.got == b.got == c.got == [['451-["news","hi",{"_placeholder":true,"num":0}]', b"\x00"]]
    assert a.got[0] is b.got[0] is c.got[0]  # one encode for all of them
    assert d.got == []


async def test_an_emit_leaves_out_the_sessions_and_channel_members_it_excludes(hub: Hub) -> None:
    a, b, c = members(hub, sid("a"), sid("b"), sid("c"))
    hub.subscribe(a, "one")
    hub.subscribe(b, "one")
    hub.subscribe(c, "two")

    def reached(**options: Any) -> list[bool]:
        before = [len(member.got) for member in (a, b, c)]
        route(emit("e", [], **options), hub.broker, hub.call)
        return [len(member.got) > count for member, count in zip((a, b, c), before, strict=True)]

    assert reached(to=["one", "two"], exclude=sid("b")) == [True, False, True]
    assert reached(to="one", exclude=[b]) == [True, False, False]  # one channel; a socket stands for its id
    assert reached(to=sid("c"), exclude="two") == [False, False, False]  # one session
    assert reached(to=None, exclude=["one"]) == [False, False, True]  # the whole namespace
    assert reached(to=[]) == [False, False, False]


def test_emit_refuses_what_no_client_takes() -> None:
    for event in ("connect", "disconnect", "connect_error", "disconnecting", "newListener", "", 5):
        with pytest.raises(ValueError, match=r"reserved event name|non-empty string"):
            emit(event, [], "room")  # type: ignore[arg-type]
    for to in ([b"room"], 5, {"room": 1}, [["room"]], "", "r" * 201):
        with pytest.raises(ValueError):
            emit("e", [], to)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        emit("e", [], "room", exclude=[None])  # type: ignore[list-item]
    # A string of the form of a session id names that socket; any other, a channel.
    assert split_targets(["room", sid("a"), "node0000.x", sid("a"), "room"], 200) == (
        ("room", "node0000.x"),
        (sid("a"),),
    )
