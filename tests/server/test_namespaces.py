"""Namespace connects over a real socket: a connection's CONNECT packets are answered in the order
they came, whether the namespace has connect handlers (they run as jobs of the connection) or none
(the server answers at once when no job of the connection is waiting)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import orjson
import pytest
from websockets.asyncio.client import connect

import tidings
from tests.serving import ThreadedServer

TIMEOUT = 5.0  # a guard against hanging, never the thing a test waits for

handlers = tidings.Handlers()
entered = threading.Event()
gate = threading.Event()


@handlers.on("connect", namespace="/slow")
def slow_connect(request, socket, context):
    entered.set()
    gate.wait(TIMEOUT)


@handlers.on("hello", namespace="/plain")
def hello(request, socket, context):
    return "hi"


@pytest.fixture(scope="module")
def server(ws_protocol: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(tidings.Server(handlers=handlers), ws_protocol) as running:
        yield running


async def test_a_namespace_without_connect_handlers_is_answered_after_the_ones_before_it(
    server: ThreadedServer,
) -> None:
    entered.clear()
    gate.clear()
    async with connect(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket") as ws:
        assert str(await asyncio.wait_for(ws.recv(), TIMEOUT)).startswith("0{")
        await ws.send("40/slow,")
        assert await asyncio.to_thread(entered.wait, TIMEOUT)
        await ws.send("40/plain,")  # no connect handler: nothing of its own to wait for
        await asyncio.sleep(0.2)  # time for a wrong server to answer /plain first
        gate.set()
        replies = [str(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(2)]
        assert [reply.split(",")[0] for reply in replies] == ["40/slow", "40/plain"]
        assert all(orjson.loads(reply.split(",", 1)[1])["sid"] for reply in replies)
        await ws.send('42/plain,1["hello"]')
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '43/plain,1["hi"]'
