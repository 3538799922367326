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


@pytest.mark.parametrize("mode", TRANSPORTS)
def test_connect_emit_ack(interop_server: TidingsProcess, node_client: NodeClient, mode: str) -> None:
    node_client.connect(interop_server.url, **TRANSPORTS[mode])
    opened = node_client.expect("open")
    connected = node_client.expect("connect")
    welcome = node_client.event("welcome")
    assert welcome == [connected["id"], "4"]
    if mode == "upgrade":
        assert opened["transport"] == "polling"
        assert node_client.expect("upgrade")["transport"] == "websocket"
    else:
        assert connected["transport"] == mode
    assert node_client.call("echo", "hi", 42, {"a": [1, None]}) == ["hi", 42, {"a": [1, None]}]
