"""Fan-out is encode-once: one broadcast to many sockets encodes its packet once, whoever sends it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import tidings
from tests.raw_client import RawClient
from tests.serving import ThreadedServer
from tidings.protocol import socketio as sio
from tidings.protocol.socketio import connection

RECIPIENTS = 50
handlers = tidings.Handlers()


@handlers.on("tell_channel")
def tell_channel(request, socket, context, message):
    socket.send_and_broadcast_channel(message, "news")


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sio.Packet]]:
    """Every Socket.IO packet the server encodes, from now on."""
    seen: list[sio.Packet] = []
    original = sio.encode

    def counting(packet: sio.Packet) -> list[str | bytes]:
        seen.append(packet)
        return original(packet)

    # Every packet the server sends is encoded by sio.messages, which calls the codec from there.
    monkeypatch.setattr(connection, "encode", counting)
    yield seen


async def test_each_broadcast_is_encoded_once(encodes: list[sio.Packet]) -> None:
    app = tidings.Server(handlers=handlers)
    with ThreadedServer(app) as server:
        clients = await asyncio.gather(*(RawClient.connect(server.url) for _ in range(RECIPIENTS)))
        for client in clients:
            assert await client.call("subscribe", "news") == [{"ok": True}]
        encodes.clear()

        # Out of band, from this (non-loop) thread.
        reached = await asyncio.to_thread(tidings.broadcast_channel, {"n": 1}, "news")
        assert reached == RECIPIENTS
        assert [await c.event() for c in clients] == [["message", {"n": 1}, "news"]] * RECIPIENTS
        assert [p.data for p in encodes] == [["message", {"n": 1}, "news"]]

        # From a def handler (a worker thread): one encode too.
        encodes.clear()
        await clients[0].emit("tell_channel", "hello")
        assert [await c.event() for c in clients] == [["message", "hello", "news"]] * RECIPIENTS
        assert [p.data for p in encodes] == [["message", "hello", "news"]]

        # Server.emit to a whole namespace.
        encodes.clear()
        await asyncio.to_thread(app.emit, "tick", 3)
        assert [await c.event() for c in clients] == [["tick", 3]] * RECIPIENTS
        assert [p.data for p in encodes] == [["tick", 3]]

        # tidings.emit to two channels and a session id: every socket once, one encode.
        for client in clients[:10]:
            assert await client.call("subscribe", "sports") == [{"ok": True}]
        encodes.clear()
        to = ["news", "sports", clients[0].session_id]
        assert await asyncio.to_thread(tidings.emit, "score", 1, to=to) == RECIPIENTS
        assert [await c.event() for c in clients] == [["score", 1]] * RECIPIENTS
        assert [p.data for p in encodes] == [["score", 1]]
        await asyncio.gather(*(c.close() for c in clients))
