"""Named events to channels and sessions (``tidings.emit`` & co), the ``message`` event of any shape,
and the catch-all, with the official Node socket.io-client against a real `tidings run`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.node_client import NodeClient
from tests.serving import TidingsProcess

WEBSOCKET, POLLING, UPGRADE = ["websocket"], ["polling"], ["polling", "websocket"]
Connect = Callable[..., tuple[NodeClient, str]]


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/interop/events_app.py:app").start()
    yield running
    running.stop()


@pytest.fixture
def connect(server: TidingsProcess) -> Iterator[Connect]:
    """Connect an official client (to a namespace, over given transports): the client and its id."""
    started: list[NodeClient] = []

    def connected(transports: list[str] = WEBSOCKET, namespace: str = "") -> tuple[NodeClient, str]:
        client = NodeClient()
        started.append(client)
        client.connect(server.url + namespace, transports=transports)
        return client, client.expect("connect")["id"]

    yield connected
    for client in started:
        client.close()


def rooms(count: int) -> list[str]:
    """Channels of one test's own: a polling client of an earlier test may linger in the server's."""
    test = uuid.uuid4().hex[:8]
    return [f"room-{test}-{number}" for number in range(1, count + 1)]


def subscribe(client: NodeClient, *channels: str) -> None:
    for channel in channels:
        assert client.call("subscribe", channel) == [{"ok": True}]


def events_until_fence(*clients: NodeClient) -> list[list[list[Any]]]:
    """What each client got, in order, before a ``fence`` event to every socket (sent now): all
    that the emits before it sent them, with nothing more to come."""
    clients[0].call("server_emit", "fence", [])
    got: list[list[list[Any]]] = []
    for client in clients:
        events = []
        while (report := client.expect("event"))["event"] != "fence":
            events.append([report["event"], *report["args"]])
        got.append(events)
    return got


def test_emit_reaches_channels_and_session_ids_each_socket_once(connect: Connect) -> None:
    (ada, ada_id), (bob, bob_id), (cy, cy_id) = connect(WEBSOCKET), connect(POLLING), connect(UPGRADE)
    one, two = rooms(2)
    subscribe(ada, one)
    subscribe(bob, one, two)
    subscribe(cy, two)

    # From a def handler's thread, as from a WSGI view: the count, then the events.
    assert ada.call("emit", "price", [101.5], one) == [{"reached": 2}]
    # Bob is in both channels and named by his session id: he gets it once. Bytes go as binary.
    news = ["news", "hi", b"\x00\x01"]
    assert cy.call("emit", "news", news[1:], [one, two, bob_id]) == [{"reached": 3}]
    # A session id alone; then from a coroutine on the loop (tidings.aemit) to two of them.
    assert ada.call("emit", "whisper", ["psst"], cy_id) == [{"reached": 1}]
    assert cy.call("aemit", "ping", [1], [ada_id, cy_id]) == [{"reached": 2}]
    # Server.emit to a channel: fire and forget.
    assert ada.call("server_emit", "tick", [2], two) == [{"reached": None}]
    assert events_until_fence(ada, bob, cy) == [
        [["price", 101.5], news, ["ping", 1]],
        [["price", 101.5], news, ["tick", 2]],
        [news, ["whisper", "psst"], ["ping", 1], ["tick", 2]],
    ]


def test_exclude_leaves_out_sessions_and_channel_members(connect: Connect) -> None:
    (ada, ada_id), (bob, bob_id), (cy, _) = connect(WEBSOCKET), connect(POLLING), connect(WEBSOCKET)
    one, two = rooms(2)
    subscribe(ada, one)
    subscribe(bob, one, two)
    subscribe(cy, two)

    assert ada.call("emit", "a", [], [one, two], bob_id) == [{"reached": 2}]
    assert ada.call("emit", "b", [], one, two) == [{"reached": 1}]  # bob is in the second
    assert ada.call("server_emit", "c", [], None, [ada_id, one]) == [{"reached": None}]  # namespace
    # socket.emit(to=channel) reaches the sender too; exclude=socket, everyone in it but the sender.
    assert bob.call("socket_emit", "typing", ["bob"], one, True) == [{"reached": None}]
    assert bob.call("socket_emit", "said", ["hi"], one) == [{"reached": None}]
    assert events_until_fence(ada, bob, cy) == [
        [["a"], ["b"], ["typing", "bob"], ["said", "hi"]],
        [["said", "hi"]],
        [["a"], ["c"]],
    ]


def test_emit_to_nobody_and_bad_names(connect: Connect) -> None:
    ada, ada_id = connect()
    empty, void = rooms(2)
    assert ada.call("emit", "x", [], empty) == [
        {"no_socket": f"no socket is subscribed to channel {empty!r}"}
    ]
    assert ada.call("emit", "x", [], [empty, void]) == [
        {"no_socket": f"no socket in any of {[empty, void]!r}"}
    ]
    assert ada.call("emit", "x", [], ada_id, ada_id) == [
        {"no_socket": f"no socket with session id {ada_id!r}"}
    ]
    assert ada.call("emit", "disconnect", [], ada_id) == [
        {"value_error": "'disconnect' is a reserved event name"}
    ]
    assert ada.call("socket_emit", "connect_error", [], ada_id) == [
        {"value_error": "'connect_error' is a reserved event name"}
    ]
    assert ada.call("socket_emit", "newListener", [], None) == [  # to the socket itself
        {"value_error": "'newListener' is a reserved event name"}
    ]
    assert ada.call("socket_emit", "x", [], None, True) == [  # exclude= with no to=: to itself
        {"value_error": "exclude leaves sockets out of the ones to= names: give to= too"}
    ]
    assert ada.call("emit", "", [], ada_id) == [
        {"value_error": "an event name is a non-empty string, not ''"}
    ]
    assert ada.call("emit", "x", [], [5]) == [{"value_error": "not a channel, session id or socket: 5"}]
    assert ada.call("emit", "x", [], {"room": 1}) == [
        {"value_error": "not a channel, session id or socket: {'room': 1}"}
    ]
    assert ada.call("emit", "x", [], "r" * 201) == [
        {"value_error": "channel name longer than 200 characters"}
    ]
    assert events_until_fence(ada) == [[]]  # none of them sent anything; the connection is fine


def test_message_of_any_shape_reaches_the_message_handlers(connect: Connect) -> None:
    client, _ = connect(POLLING)
    room, elsewhere = rooms(2)
    subscribe(client, room)
    # What socket.send(a, b, c) emits: the handlers bound to no channel get it as sent, with its ack.
    assert client.call("message", "a", "b", "c") == [["message", "a", "b", "c"]]
    assert client.call("message", "text", b"\x01\x02") == [["message", "text", b"\x01\x02"]]
    assert client.call("message", {"n": 1}, None) == [["message", {"n": 1}, None]]
    assert client.call("message") == [["message"]]
    # The seeds' shape keeps the seeds' meaning: (message[, channel]), channel-bound handlers, members.
    assert client.call("message", "hi", room) == [["message", "hi", room]]
    assert client.call("message", "hi", elsewhere) == [
        {"ok": False, "error": f"not subscribed to {elsewhere!r}"}
    ]
    assert client.call("message", "alone") == [["message", "alone", None]]
    assert client.call("room_messages") == [[["hi", room], ["alone", None]]]


def test_catch_all_gets_the_events_without_a_handler(connect: Connect) -> None:
    client, _ = connect(WEBSOCKET, "/any")
    assert client.call("whatever", 1, b"\x00") == [["whatever", 1, b"\x00"]]
    assert client.call("known", 2) == [["known", 2]]  # an event with a handler of its own
    assert client.call("message", "m") == [["message", "m"]]  # /any has no message handler
    assert client.call("*", "star") == [["*", "star"]]  # an event named "*" is an event like others
    assert client.call("forbidden") == [{"ok": False, "error": "not that one"}]
    assert client.call("subscribe", "room-z") == [{"ok": True}]  # tidings' own events stay its own
