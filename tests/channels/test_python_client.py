"""Channels and the seeds' events with the python-socketio client, against a real `tidings run`."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import socketio

from tests.python_client import PythonClient
from tests.raw_client import RawClient
from tests.serving import TidingsProcess

Connect = Callable[..., Awaitable[PythonClient]]
_marks = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/channels/app.py:app").start()
    yield running
    running.stop()


@pytest.fixture
async def clients(server: TidingsProcess) -> AsyncIterator[Connect]:
    """Connects python-socketio AsyncClients (over WebSocket unless told); disconnects them after."""
    opened: list[PythonClient] = []

    async def open_client(**options: Any) -> PythonClient:
        client = PythonClient("async")
        opened.append(client)
        await client.connect(server.url, transports=options.pop("transports", ["websocket"]), **options)
        return client

    yield open_client
    for client in opened:
        await client.shutdown()


async def publish(server: TidingsProcess, **query: str) -> dict[str, Any]:
    """Call tidings.<call>(...) out of band, from the app's WSGI view."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.get("/publish", params=query)
    reply.raise_for_status()
    return reply.json()


async def messages_until_fence(client: PythonClient, mark: int) -> list[tuple[Any, ...]]:
    """The ``message`` events a client got before the fence ``mark``."""
    got = []
    while (args := await client.event("message")) != ({"fence": mark},):
        got.append(args)
    return got


async def subscribed(client: PythonClient, *channels: str) -> PythonClient:
    for channel in channels:
        assert await client.call("subscribe", channel) == {"ok": True}
    return client


async def audit_events(observer: PythonClient, session_id: str, count: int) -> list[list[Any]]:
    """The next ``count`` lifecycle reports the app sent to the audit channel about ``session_id``.

    Reports on other sockets (other tests' clients going away) are passed over.
    """
    reports = []
    while len(reports) < count:
        report, channel = await observer.event("message")
        assert channel == "audit"
        if report[1] == session_id:
            reports.append(report)
    return reports


async def test_subscribe_then_unsubscribe(server: TidingsProcess, clients: Connect) -> None:
    client = await subscribed(await clients(), "room-1")
    assert await client.call("channels") == ["room-1"]  # socket.channels, server side
    assert await publish(server, call="broadcast_channel", channel="room-1", message="hi") == {"reached": 1}
    assert await client.event("message") == ("hi", "room-1")
    assert await client.call("unsubscribe", "room-1") == {"ok": True}
    assert "no_socket" in await publish(server, call="broadcast_channel", channel="room-1", message="hi")
    assert await client.call("unsubscribe", "room-1") == {"ok": True}  # leaving twice is fine


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("private-1", "private channel"),  # refused by an on_subscribe handler
        (42, "channel must be a string"),
        ("", "channel must not be empty"),
        ("x" * 201, "channel name longer than 200 characters"),
        ("explode", "Internal server error"),  # the on_subscribe handler raised
    ],
)
async def test_refused_subscriptions(
    server: TidingsProcess, clients: Connect, channel: Any, error: str
) -> None:
    client = await clients()
    assert await client.call("subscribe", channel) == {"ok": False, "error": error}
    assert await client.call("channels") == []  # not subscribed
    assert await client.call("subscribe", "room-ok") == {"ok": True}  # and the socket goes on


async def test_server_side_subscribe_and_its_limits(clients: Connect) -> None:
    client = await clients()
    assert await client.call("do", "subscribe", "room-s") == ["room-s"]
    assert await client.call("do", "unsubscribe", "room-s") == []
    # A server-side subscription over the limits raises ValueError in the handler: on_error, no ack value.
    assert await client.call("do", "subscribe", "") is None


async def test_each_send_method_reaches_exactly_the_right_sockets(clients: Connect) -> None:
    sender = await subscribed(await clients(), "room-a", "room-b")
    in_a = [await subscribed(await clients(), "room-a") for _ in range(2)]
    in_b = await subscribed(await clients(), "room-b")
    nowhere = await clients(transports=["polling"])  # channel membership is transport-blind
    everyone = [sender, *in_a, in_b, nowhere]
    cases: list[tuple[tuple[Any, ...], dict[PythonClient, list[tuple[Any, ...]]]]] = [
        (("send", "m1"), {sender: [("m1",)]}),
        (("broadcast", "m2"), {c: [("m2",)] for c in everyone if c is not sender}),
        (("send_and_broadcast", "m3"), {c: [("m3",)] for c in everyone}),
        (("broadcast_channel", "m4", "room-a"), {c: [("m4", "room-a")] for c in in_a}),
        (
            ("broadcast_channel", "m5"),  # every channel the sender is in
            {in_a[0]: [("m5", "room-a")], in_a[1]: [("m5", "room-a")], in_b: [("m5", "room-b")]},
        ),
        (
            ("send_and_broadcast_channel", "m6", "room-b"),
            {sender: [("m6", "room-b")], in_b: [("m6", "room-b")]},
        ),
        (
            ("broadcast_channel", {"binary": b"\x00\xff"}, "room-b"),
            {in_b: [({"binary": b"\x00\xff"}, "room-b")]},
        ),
    ]
    for args, expected in cases:
        await sender.call("do", *args)
        mark = next(_marks)
        await sender.emit("fence", mark)
        for client in everyone:
            assert await messages_until_fence(client, mark) == expected.get(client, []), args


async def test_channel_bound_message_handlers(clients: Connect) -> None:
    sender = await subscribed(await clients(), "room-7", "elsewhere")
    listener = await subscribed(await clients(), "room-7")
    assert await sender.call("message", "hello room", "room-7") == "room"  # the ^room- handler acked
    assert await listener.event("message") == ("hello room", "room-7")  # and broadcast it
    assert await sender.call("message", "to nobody", "elsewhere") is None  # only the unbound handler
    assert await sender.call("message", "for the board", "dashboard") == "dashboard"  # a non-member's
    assert await sender.call("unsubscribe", "room-7") == {"ok": True}
    assert await sender.call("message", "no channel") is None
    # Not addressed to a channel: bound handlers match the channels the socket is in.
    await subscribed(sender, "dashboard-2")
    assert await sender.call("message", "via membership") == "dashboard"
    assert await sender.call("seen") == [  # the unbound handler runs for members' messages only
        ["hello room", "room-7"],
        ["to nobody", "elsewhere"],
        ["no channel", None],
        ["via membership", None],
    ]


async def test_a_message_to_a_channel_the_socket_is_not_in_is_refused(clients: Connect) -> None:
    member = await subscribed(await clients(), "room-8")
    outsider = await clients()
    assert await outsider.call("subscribe", "private-8") == {"ok": False, "error": "private channel"}
    for channel in ("room-8", "private-8"):
        error = f"not subscribed to {channel!r}"
        assert await outsider.call("message", "let me in", channel) == {"ok": False, "error": error}
    assert await outsider.call("message", "x", "") == {"ok": False, "error": "channel must not be empty"}
    too_long = {"ok": False, "error": "channel name longer than 200 characters"}
    assert await outsider.call("message", "x", "room-" + "8" * 196) == too_long
    # A handler registered with members_only=False takes it, and only such handlers run.
    assert await outsider.call("message", "for the board", "dashboard") == "dashboard"
    assert await outsider.call("seen") == []
    mark = next(_marks)
    await outsider.emit("fence", mark)
    assert await messages_until_fence(member, mark) == []  # nothing reached the room


async def test_refuse_in_a_message_or_event_handler_answers_the_client(clients: Connect) -> None:
    observer = await subscribed(await clients(), "audit")
    client = await subscribed(await clients(), "read-only-news", "room-r")
    sid = client.client.get_sid()
    assert len(await audit_events(observer, sid, 3)) == 3  # its connect and its two subscribes
    refused = {"ok": False, "error": "read-only channel"}
    assert await client.call("message", "may I?", "read-only-news") == refused
    assert await client.call("refused") == {"ok": False, "error": "not for you"}  # an event of the app's
    assert await client.call("seen") == []  # the handler after the refusing one did not run
    # A refusal is no error: the first report after them is this error's.
    await client.emit("message", "boom", "room-r")
    assert await audit_events(observer, sid, 1) == [["error", sid, "boom"]]


async def test_a_message_of_another_shape_reaches_the_unbound_handlers_as_sent(clients: Connect) -> None:
    client = await subscribed(await clients(), "room-s")
    # The seeds' unbound handler gets (message, channel) = ("text", 5); the ^room- one ("room") does not run.
    assert await client.call("message", "text", 5) is None
    assert await client.call("seen") == [["text", 5]]


async def test_handler_errors_reach_on_error_and_the_socket_survives(clients: Connect) -> None:
    observer = await subscribed(await clients(), "audit")
    client = await subscribed(await clients(), "room-e", "other")
    sid = client.client.get_sid()
    assert len(await audit_events(observer, sid, 3)) == 3  # its connect and its two subscribes
    await client.emit("message", "boom", "room-e")
    assert await audit_events(observer, sid, 2) == [["error", sid, "boom"], ["room-error", sid, "boom"]]
    await client.emit("message", "boom", "other")  # the room-bound error handler does not match
    assert await audit_events(observer, sid, 1) == [["error", sid, "boom"]]
    assert await client.call("message", "after", "room-e") == "room"


async def test_disconnect_unsubscribe_finish_order(clients: Connect) -> None:
    observer = await subscribed(await clients(), "audit")
    client = await subscribed(await clients(), "room-d", "dashboard")
    sid = client.client.get_sid()
    assert len(await audit_events(observer, sid, 3)) == 3  # its connect and its two subscribes
    await client.disconnect()
    reports = await audit_events(observer, sid, 5)
    # python-socketio sends DISCONNECT, then closes the transport without waiting for it to go out.
    assert reports[0].pop() in ("client namespace disconnect", "transport close")
    assert reports == [
        ["disconnect", sid],
        ["disconnect-from-room", sid],
        ["unsubscribe", sid, "room-d"],
        ["unsubscribe", sid, "dashboard"],
        ["finish", sid],
    ]


async def test_disconnect_and_finish_on_client_timeout(server: TidingsProcess, clients: Connect) -> None:
    observer = await subscribed(await clients(), "audit")
    silent = await RawClient.connect(server.url, answer_pings=False)
    try:
        assert await silent.call("subscribe", "room-t") == [{"ok": True}]
        reports = await audit_events(observer, silent.session_id, 6)
        assert reports == [
            ["connect", silent.session_id],
            ["subscribe", silent.session_id, "room-t"],
            ["disconnect", silent.session_id, "ping timeout"],
            ["disconnect-from-room", silent.session_id],
            ["unsubscribe", silent.session_id, "room-t"],
            ["finish", silent.session_id],
        ]
    finally:
        await silent.close()


async def test_refused_connect_runs_finish_only(server: TidingsProcess, clients: Connect) -> None:
    observer = await subscribed(await clients(), "audit")
    refused = PythonClient("async")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(server.url, transports=["websocket"], auth={"refuse": True, "tag": "t1"})
    assert await refused.event("connect_error") == ({"message": "go away"},)
    # Its first report is its finish: no connect, no disconnect, since it never was connected.
    while (report := (await observer.event("message"))[0])[-1] != "t1" and report[0] != "connect":
        pass
    assert report[0] == "finish"


async def test_out_of_band_sends_while_100_clients_are_connected(server: TidingsProcess) -> None:
    crowd = await asyncio.gather(*(RawClient.connect(server.url) for _ in range(100)))
    try:
        for client in crowd:
            assert await client.call("subscribe", "crowd") == [{"ok": True}]
        for thread in ("", "1"):  # from the WSGI view's own thread, then from a thread it starts
            reply = await publish(
                server, call="broadcast_channel", channel="crowd", message="all", thread=thread
            )
            assert reply == {"reached": 100}
            assert [await client.event() for client in crowd] == [["message", "all", "crowd"]] * 100
        reply = await publish(server, call="broadcast", message="everyone")
        assert reply["reached"] >= 100  # every socket of "/", other tests' included
        assert [await client.event() for client in crowd] == [["message", "everyone"]] * 100
        target = crowd[37]
        reply = await publish(server, call="send", session_id=target.session_id, message="just you")
        assert reply == {"reached": 1}
        assert await target.event() == ["message", "just you"]
        await target.emit("fence", -1)
        for client in crowd:  # nobody else got "just you": the fence is the next thing they see
            assert await client.event() == ["message", {"fence": -1}]
    finally:
        await asyncio.gather(*(client.close() for client in crowd))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"call": "broadcast_channel", "channel": "nobody-here", "message": "x"}, "channel 'nobody-here'"),
        ({"call": "send", "session_id": "no-such-session", "message": "x"}, "session id 'no-such-session'"),
        ({"call": "broadcast", "namespace": "/empty", "message": "x"}, "namespace '/empty'"),
    ],
)
async def test_no_socket(server: TidingsProcess, query: dict[str, str], reason: str) -> None:
    reply = await publish(server, **query)
    assert list(reply) == ["no_socket"]
    assert reason in reply["no_socket"]
