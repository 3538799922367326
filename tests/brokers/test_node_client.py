"""The official Node socket.io-client across nodes that share channels through Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import tidings
from tests.brokers.cluster import REDIS_URL, running_nodes
from tests.node_client import NodeClient
from tests.serving import TidingsProcess


@pytest.fixture(scope="module")
def nodes(prefix: str) -> Iterator[list[TidingsProcess]]:
    with running_nodes(prefix, 2) as servers:
        yield servers


@pytest.fixture
def node_clients() -> Iterator[list[NodeClient]]:
    clients = [NodeClient(), NodeClient()]
    yield clients
    for client in clients:
        client.close()


def test_node_clients_on_two_nodes_share_a_channel(
    nodes: list[TidingsProcess],
    prefix: str,
    node_clients: list[NodeClient],
) -> None:
    channel = f"room-{uuid.uuid4().hex[:8]}"
    first, second = node_clients
    for client, server, transports in ((first, nodes[0], ["websocket"]), (second, nodes[1], ["polling"])):
        client.connect(server.url, transports=transports)
        client.expect("connect")
        assert client.call("subscribe", channel) == [{"ok": True}]
    # A handler on node 0 publishes: the sender is left out, the Node client on node 1 gets it.
    first.emit("tell", "broadcast_channel", {"text": "from node 0"}, channel)
    assert second.event("message") == [{"text": "from node 0"}, channel]
    # Out of band, from this process that serves nothing: both get it, in order, once.
    with tidings.Publisher(REDIS_URL, prefix) as publisher:
        for number in range(20):
            assert publisher.broadcast_channel(number, channel) == 2  # two server processes took it
    for client in node_clients:
        assert [client.event("message")[0] for _ in range(20)] == list(range(20))
    # Binary crosses nodes too.
    second.emit("tell", "send_and_broadcast_channel", b"\x00\x01\xff", channel)
    for client in node_clients:
        assert client.event("message") == [b"\x00\x01\xff", channel]
