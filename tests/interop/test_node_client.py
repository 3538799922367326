"""The official Node socket.io-client (4.8) against a real `tidings run` process."""

from __future__ import annotations

import pytest

from tests.node_client import NodeClient
from tests.serving import TidingsProcess

TRANSPORTS = {
    "websocket": {"transports": ["websocket"]},
    "polling": {"transports": ["polling"]},
    "upgrade": {"transports": ["polling", "websocket"]},
}


@pytest.fixture(params=list(TRANSPORTS))
def connected(request: pytest.FixtureRequest, interop_server: TidingsProcess, node_client: NodeClient):
    """A Node client connected to "/" over each transport mode."""
    mode = request.param
    node_client.connect(interop_server.url, **TRANSPORTS[mode])
    opened = node_client.expect("open")
    if mode == "upgrade":
        assert opened["transport"] == "polling"
        assert node_client.expect("upgrade")["transport"] == "websocket"
    else:
        assert opened["transport"] == mode
    node_client.expect("connect")
    return node_client


def test_connect_welcome_and_ack(connected: NodeClient) -> None:
    welcome = connected.event("welcome")
    assert welcome[1] == "4"  # the handler read the request's query string
    assert connected.call("echo", "hi", 42, {"a": [1, None]}) == ["hi", 42, {"a": [1, None]}]


def test_ack_without_arguments(connected: NodeClient) -> None:
    assert connected.call("seq", 1) == []


def test_binary_both_ways(connected: NodeClient) -> None:
    blob = bytes(range(256)) * 4
    nested = {"name": "file", "parts": [b"\x00\x01", b"", b"\xff" * 10]}
    assert connected.call("echo", blob, nested) == [blob, nested]
    connected.emit("echo_back", "text", blob, nested)
    assert connected.event("echoed") == ["text", blob, nested]


def test_server_to_client_ack(connected: NodeClient) -> None:
    connected.answer("question", "forty-two")
    assert connected.call("ask", "meaning?") == [{"answer": "forty-two"}]
    assert connected.event("question") == ["meaning?"]
    assert connected.call("ask_async", "again?") == [{"answer": "forty-two"}]


def test_events_handled_in_order(connected: NodeClient) -> None:
    for n in range(50):
        connected.emit("seq", n)
    assert connected.call("seen") == [list(range(50))]


def test_handler_exception_keeps_connection(connected: NodeClient) -> None:
    connected.emit("fail")
    assert connected.call("echo", "still here") == ["still here"]


def test_server_disconnect(connected: NodeClient) -> None:
    connected.emit("kick")
    assert connected.expect("disconnect")["reason"] == "io server disconnect"


def test_broadcast_reaches_every_client(interop_server: TidingsProcess, connected: NodeClient) -> None:
    other = NodeClient()
    try:
        other.connect(interop_server.url, transports=["polling"])
        other.expect("connect")
        connected.emit("shout", "hello all")
        assert connected.event("shouted") == ["hello all"]
        assert other.event("shouted") == ["hello all"]
    finally:
        other.close()


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_user_namespace(interop_server: TidingsProcess, node_client: NodeClient, mode: str) -> None:
    node_client.connect(interop_server.url + "/admin", auth={"role": "admin"}, **TRANSPORTS[mode])
    node_client.expect("connect")
    assert node_client.call("whoami") == [{"namespace": "/admin", "auth": {"role": "admin"}}]


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_refused_connect_has_reason(
    interop_server: TidingsProcess, node_client: NodeClient, mode: str
) -> None:
    node_client.connect(interop_server.url, auth={"token": "bad"}, reconnection=False, **TRANSPORTS[mode])
    refused = node_client.expect("connect_error")
    assert refused["message"] == "bad token"
    assert refused["data"] == {"code": 42}


def test_refused_namespace(interop_server: TidingsProcess, node_client: NodeClient) -> None:
    node_client.connect(interop_server.url + "/admin", auth={"role": "guest"}, reconnection=False)
    assert node_client.expect("connect_error")["message"] == "admins only"


def test_unknown_namespace(interop_server: TidingsProcess, node_client: NodeClient) -> None:
    node_client.connect(interop_server.url + "/nowhere", reconnection=False)
    assert node_client.expect("connect_error")["message"] == "Invalid namespace"


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_reconnect_after_server_restart(node_client: NodeClient, mode: str) -> None:
    server = TidingsProcess("tests/interop/app.py:app").start()
    try:
        node_client.connect(server.url, reconnectionDelay=100, reconnectionDelayMax=500, **TRANSPORTS[mode])
        first = node_client.expect("connect")
        server.stop()
        assert node_client.expect("disconnect")["reason"] in ("transport close", "transport error")
        server.start()
        node_client.expect("reconnect", timeout=20)
        second = node_client.expect("connect")
        assert second["id"] != first["id"]
        assert node_client.call("echo", "back") == ["back"]
    finally:
        server.stop()
