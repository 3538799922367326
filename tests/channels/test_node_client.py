"""Channels with the official Node socket.io-client, beside python-socketio, on one `tidings run`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node_client import NodeClient
from tests.python_client import PythonClient
from tests.serving import TidingsProcess

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": ["polling", "websocket"]}


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/channels/app.py:app").start()
    yield running
    running.stop()


@pytest.fixture(params=list(TRANSPORTS))
def node(request: pytest.FixtureRequest, server: TidingsProcess, node_client: NodeClient) -> NodeClient:
    node_client.connect(server.url, transports=TRANSPORTS[request.param])
    node_client.expect("connect")
    return node_client


async def test_subscribe_message_and_unsubscribe(server: TidingsProcess, node: NodeClient) -> None:
    python = PythonClient("async")
    await python.connect(server.url, transports=["websocket"])
    try:
        assert node.call("subscribe", "room-n") == [{"ok": True}]
        assert await python.call("subscribe", "room-n") == {"ok": True}
        # From Node to the room: the ^room- handler acks and broadcasts to the others in it.
        assert node.call("message", {"text": "from node"}, "room-n") == ["room"]
        assert await python.event("message") == ({"text": "from node"}, "room-n")
        # From python to the room: Node gets the message with its channel.
        assert await python.call("message", b"\x01\x02", "room-n") == "room"
        assert node.event("message") == [b"\x01\x02", "room-n"]
        assert node.call("unsubscribe", "room-n") == [{"ok": True}]
        assert await python.call("message", "after", "room-n") == "room"
        assert node.call("channels") == [[]]  # Node is out, and got nothing more
        assert [report for report in node.backlog if report["type"] == "event"] == []
    finally:
        await python.disconnect()


def test_refused_subscription(node: NodeClient) -> None:
    assert node.call("subscribe", "private-n") == [{"ok": False, "error": "private channel"}]
    assert node.call("channels") == [[]]


def test_handler_error_keeps_the_socket(node: NodeClient) -> None:
    node.emit("message", "boom")
    assert node.call("subscribe", "dashboard") == [{"ok": True}]
    assert node.call("message", "still here", "dashboard") == ["dashboard"]
    assert node.call("seen") == [[["boom", None], ["still here", "dashboard"]]]
