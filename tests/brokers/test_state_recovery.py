"""Connection state recovery with the official Node socket.io-client 4.x, over real sockets.

A client's transport drops (``drop``: an Engine.IO close, as a lost connection leaves it); meanwhile
others send to its channel, to its session id and to its namespace; it reconnects with the pid and
offset it has, and must find ``socket.recovered`` true, its old id, and every missed event once, in
order, then the live ones. Through the memory broker on one server, and through Redis across two
`tidings run` processes (it comes back to the other one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tidings
from tests.brokers.cluster import running_nodes
from tests.brokers.recovery_app import handlers
from tests.node_client import NodeClient
from tests.serving import ThreadedServer, TidingsProcess

RECOVERY_APP = "tests/brokers/recovery_app.py:app"


@pytest.fixture
def clients() -> Iterator[Any]:
    """Start official clients with ``clients()``; all are closed afterwards."""
    started: list[NodeClient] = []

    def start() -> NodeClient:
        started.append(NodeClient())
        return started[-1]

    yield start
    for client in started:
        client.close()


def connected(client: NodeClient, url: str, **opts: Any) -> dict[str, Any]:
    client.connect(url, transports=["websocket"], **opts)
    return client.expect("connect")


def events_until(client: NodeClient, last: Any) -> list[list[Any]]:
    """The ``[event, *args]`` of every event up to the ``message`` event whose message is ``last``."""
    got: list[list[Any]] = []
    while not got or got[-1][:2] != ["message", last]:
        report = client.expect("event")
        got.append([report["event"], *report["args"]])
    return got


def without_offsets(events: list[list[Any]]) -> list[list[Any]]:
    """The events less their last argument, after checking it is a log offset (a string)."""
    for event in events:
        assert isinstance(event[-1], str), event
    return [event[:-1] for event in events]


def drop(client: NodeClient, watcher: NodeClient, session_id: str) -> None:
    """Drop the client's transport; return once its server has kept its state (its disconnect
    handler, which runs after that, told the watcher)."""
    client.command("drop")
    client.expect("disconnect")
    while (gone := watcher.event("message"))[0]["gone"] != session_id:
        pass  # another test's client, gone late
    assert gone[0]["reason"] in ("transport close", "client close"), gone


def miss_and_recover(server_urls: tuple[str, str], clients: Any) -> None:
    """The scenario, the client on the first server, coming back to the second (or the same)."""
    first, second = server_urls
    watcher = clients()
    connected(watcher, second)
    assert watcher.call("subscribe", "watch") == [{"ok": True}]
    client = clients()
    hello = connected(client, first)
    assert hello["recovered"] is False
    session_id = hello["id"]
    room = f"room-{uuid.uuid4().hex[:8]}"
    assert client.call("subscribe", room) == [{"ok": True}]
    watcher.call("tell", "broadcast_channel", "before", room)
    assert without_offsets(events_until(client, "before")) == [["message", "before", room]]

    drop(client, watcher, session_id)
    watcher.call("tell", "broadcast_channel", "m1", room)
    watcher.call("send_to", session_id, "s1")  # nobody took it now (the memory broker says so)
    watcher.call("tell", "broadcast_channel", "not yours", f"other-{room}")
    watcher.call("emit_to", "news", ["e1"], [room, f"other-{room}"], None)  # several targets
    watcher.call("emit_to", "news", ["not for you"], room, session_id)  # its channel, less it
    watcher.call("emit_to", "news", ["not for you either"], [room, "watch"], room)
    watcher.call("emit_to", "news", ["e2"], [f"other-{room}", session_id], None)
    watcher.call("tell", "broadcast", "b1")  # the namespace, but the sender
    watcher.call("tell", "broadcast_channel", "m2", room)

    client.command("reconnect", url=second)
    back = client.expect("connect")
    assert (back["recovered"], back["id"]) == (True, session_id)
    missed = events_until(client, "m2")
    assert without_offsets(missed) == [
        ["message", "m1", room],
        ["message", "s1"],
        ["news", "e1"],
        ["news", "e2"],
        ["message", "b1"],
        ["message", "m2", room],
    ]
    # Live again: in its channel and at its session id, once each, after what it missed.
    watcher.call("tell", "broadcast_channel", "live", room)
    assert "reached" in watcher.call("send_to", session_id, "to you")[0]
    watcher.call("tell", "broadcast_channel", "end", room)
    assert without_offsets(events_until(client, "end")) == [
        ["message", "live", room],
        ["message", "to you"],
        ["message", "end", room],
    ]
    state = client.call("whoami")[0]
    assert state == {
        "sid": session_id,
        "recovered": True,
        "channels": [room],
        "context": {"connects": 2, "recovered": True},  # kept, then its connect handler ran again
    }
    assert not [report for report in client.backlog if report["type"] == "event"], client.backlog


def recover_through_a_burst(server_urls: tuple[str, str], clients: Any) -> None:
    """Messages go on while the client drops, while it is away and while it recovers: it gets each
    once, in order."""
    first, second = server_urls
    watcher = clients()
    connected(watcher, second)
    assert watcher.call("subscribe", "watch") == [{"ok": True}]
    client = clients()
    session_id = connected(client, first)["id"]
    room = f"room-{uuid.uuid4().hex[:8]}"
    assert client.call("subscribe", room) == [{"ok": True}]
    watcher.emit("burst", room, 300)
    got = events_until(client, 0)
    drop(client, watcher, session_id)
    client.command("reconnect", url=second)
    assert client.expect("connect")["recovered"] is True
    got += events_until(client, 299)
    assert without_offsets(got) == [["message", number, room] for number in range(300)]


def made_up_pids(url: str, clients: Any) -> None:
    """Clients that come back with a pid that is none get a new session, and take nothing."""
    watcher = clients()
    connected(watcher, url)
    assert watcher.call("subscribe", "watch") == [{"ok": True}]
    victim = clients()
    session_id = connected(victim, url)["id"]
    room = f"secret-{uuid.uuid4().hex[:8]}"
    assert victim.call("subscribe", room) == [{"ok": True}]
    watcher.call("tell", "broadcast_channel", "first", room)
    offset = victim.event("message")[-1]
    drop(victim, watcher, session_id)
    watcher.call("tell", "broadcast_channel", "for the victim only", room)
    # Its session id and offset are no secret; a pid made up, or its session id as one, is no pid.
    for pid in ("made-up-pid", session_id, "x" * 65, "", "a\nb"):
        forger = clients()
        hello = connected(forger, url, auth={"pid": pid, "offset": offset})
        assert hello["recovered"] is False and hello["id"] != session_id
        assert forger.call("whoami")[0] == {
            "sid": hello["id"],
            "recovered": False,
            "channels": [],
            "context": {"connects": 1, "recovered": False},
        }
        watcher.call("tell", "broadcast", "marker")
        assert without_offsets(events_until(forger, "marker")) == [["message", "marker"]]
    # The victim still has its session.
    victim.command("reconnect")
    assert victim.expect("connect")["recovered"] is True
    assert without_offsets(events_until(victim, "for the victim only")) == [
        ["message", "for the victim only", room]
    ]


# -- one server, the memory broker -------------------------------------------------------------------


@pytest.fixture
def recovering() -> Iterator[ThreadedServer]:
    with ThreadedServer(tidings.Server(handlers=handlers, connection_state_recovery=60)) as server:
        yield server


def test_a_client_recovers_its_socket_and_what_it_missed(recovering: ThreadedServer, clients: Any) -> None:
    miss_and_recover((recovering.url, recovering.url), clients)


def test_a_client_recovers_through_a_burst(recovering: ThreadedServer, clients: Any) -> None:
    recover_through_a_burst((recovering.url, recovering.url), clients)


def test_a_made_up_pid_gets_a_new_session(recovering: ThreadedServer, clients: Any) -> None:
    made_up_pids(recovering.url, clients)


def test_recovery_is_off_by_default(clients: Any) -> None:
    with ThreadedServer(tidings.Server(handlers=handlers)) as server:
        watcher = clients()
        connected(watcher, server.url)
        assert watcher.call("subscribe", "watch") == [{"ok": True}]
        client = clients()
        session_id = connected(client, server.url)["id"]
        assert client.call("subscribe", "room") == [{"ok": True}]
        watcher.call("tell", "broadcast_channel", "before", "room")
        assert client.event("message") == ["before", "room"]  # no offset
        drop(client, watcher, session_id)
        watcher.call("tell", "broadcast_channel", "missed", "room")
        client.command("reconnect")
        back = client.expect("connect")
        assert back["recovered"] is False and back["id"] != session_id
        assert client.call("whoami")[0]["channels"] == []


def test_a_client_whose_last_packet_left_the_log_gets_a_new_session(clients: Any) -> None:
    server = tidings.Server(handlers=handlers, connection_state_recovery=60, recovery_max_packets=3)
    with ThreadedServer(server) as running:
        watcher = clients()
        connected(watcher, running.url)
        assert watcher.call("subscribe", "watch") == [{"ok": True}]
        client = clients()
        session_id = connected(client, running.url)["id"]
        assert client.call("subscribe", "room") == [{"ok": True}]
        watcher.call("tell", "broadcast_channel", "before", "room")
        client.event("message")
        drop(client, watcher, session_id)
        for number in range(3):  # the log keeps 3 packets: "before" is gone
            watcher.call("tell", "broadcast_channel", number, "room")
        client.command("reconnect")
        back = client.expect("connect")
        assert back["recovered"] is False and back["id"] != session_id
        assert client.call("whoami")[0]["channels"] == []


# -- two `tidings run` processes sharing Redis --------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(prefix: str) -> Iterator[list[TidingsProcess]]:
    with running_nodes(prefix, 2, app=RECOVERY_APP) as servers:
        yield servers


def test_a_client_recovers_on_another_node(nodes: list[TidingsProcess], clients: Any) -> None:
    miss_and_recover((nodes[0].url, nodes[1].url), clients)


def test_a_client_recovers_on_the_same_node_through_redis(nodes: list[TidingsProcess], clients: Any) -> None:
    miss_and_recover((nodes[0].url, nodes[0].url), clients)


def test_a_client_recovers_on_another_node_through_a_burst(nodes: list[TidingsProcess], clients: Any) -> None:
    recover_through_a_burst((nodes[0].url, nodes[1].url), clients)


def test_a_made_up_pid_gets_a_new_session_through_redis(nodes: list[TidingsProcess], clients: Any) -> None:
    made_up_pids(nodes[0].url, clients)
