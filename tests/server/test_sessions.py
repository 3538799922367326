"""Session lifetime over real sockets: heartbeat, slow consumers, shutdown.

The heartbeat's and the upgrade's rules are tested on the sans-I/O session with a fake clock
(tests/protocol/test_engineio_session.py); here, once each, that the server's timer acts on them
(the upgrade's: in tests/server/test_reference.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import tidings
from tests.serving import ThreadedServer

handlers = tidings.Handlers()


@handlers.on("flood")
async def flood(request, socket, context, count, size):
    for _ in range(count):
        socket.emit("chunk", "x" * size)


@handlers.on("echo")
def echo(request, socket, context, *args):
    return args


@pytest.fixture(scope="module")
def server(ws_protocol: str) -> Iterator[ThreadedServer]:
    app = tidings.Server(handlers=handlers, ping_interval=0.3, ping_timeout=0.3, max_buffer=64_000)
    with ThreadedServer(app, ws_protocol) as running:
        yield running


def ws_url(server: ThreadedServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket{query}"


async def open_session(ws) -> str:
    opened = await ws.recv()
    assert opened.startswith("0{")
    await ws.send("40")
    assert (await ws.recv()).startswith("40{")
    return opened


async def test_silent_client_is_closed_after_ping_timeout(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        assert await ws.recv() == "2"  # the server's ping, which we leave unanswered
        with pytest.raises(ConnectionClosed):
            while True:
                assert await asyncio.wait_for(ws.recv(), 3) == "2"
        assert ws.close_code == 1000
        assert ws.close_reason == "ping timeout"


async def test_stalled_consumer_is_dropped_not_buffered(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        params = await polling_session(http)
        # 100 kB queued for a client that does not poll: more than max_buffer (64 kB).
        await http.post("/socket.io/", params=params, content='42["flood",100,1000]')
        await asyncio.sleep(0.2)
        closed = await http.get("/socket.io/", params=params)
        assert closed.status_code == 400
        assert closed.json() == {"code": 1, "message": "Session ID unknown"}


async def polling_session(http: httpx.AsyncClient) -> dict[str, str]:
    """Handshake and connect "/" over polling; returns the query parameters of the session."""
    handshake = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    sid = handshake.text.split('"sid":"')[1].split('"')[0]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    await http.post("/socket.io/", params=params, content="40")
    assert (await http.get("/socket.io/", params=params)).text.startswith("40{")
    return params


async def poll_until_message(http: httpx.AsyncClient, params: dict[str, str]) -> str:
    """GET until a payload holds a MESSAGE packet, answering the pings that come first."""
    for _ in range(20):
        payload = (await http.get("/socket.io/", params=params)).text
        if any(packet.startswith("4") for packet in payload.split("\x1e")):
            return payload
        if "2" in payload.split("\x1e"):
            await http.post("/socket.io/", params=params, content="3")
    raise AssertionError("no message in 20 polls")


async def test_dropped_poll_does_not_lose_packets(server: ThreadedServer) -> None:
    base_url = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base_url) as http:
        params = await polling_session(http)
        async with httpx.AsyncClient(base_url=base_url) as doomed:
            abandoned = asyncio.ensure_future(doomed.get("/socket.io/", params=params))
            await asyncio.sleep(0.1)
            abandoned.cancel()  # the client gives up on the pending poll: its connection closes
        await asyncio.sleep(0.1)
        await http.post("/socket.io/", params=params, content='42["flood",1,10]')
        assert '42["chunk","xxxxxxxxxx"]' in await poll_until_message(http, params)


async def test_shutdown_closes_every_session(ws_protocol: str) -> None:
    app = tidings.Server(handlers=handlers)
    with ThreadedServer(app, ws_protocol) as running:
        async with (
            connect(ws_url(running)) as ws,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http,
        ):
            await open_session(ws)
            handshake = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            sid = handshake.text.split('"sid":"')[1].split('"')[0]
            params = {"EIO": "4", "transport": "polling", "sid": sid}
            pending_poll = asyncio.ensure_future(http.get("/socket.io/", params=params))
            await asyncio.sleep(0.1)
            assert app.socketio.hub.loop is not None
            app.socketio.hub.loop.call_soon_threadsafe(app.shutdown)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert (ws.close_code, ws.close_reason) == (1001, "server shutdown")
            assert (await pending_poll).text == "1"  # the Engine.IO CLOSE packet


async def test_sessions_beyond_max_sessions_are_refused(ws_protocol: str) -> None:
    app = tidings.Server(handlers=handlers, max_sessions=2)
    with ThreadedServer(app, ws_protocol) as running:
        async with (
            connect(ws_url(running)) as first,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http,
        ):
            await open_session(first)
            await polling_session(http)
            refused = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            assert refused.status_code == 503
            assert refused.json() == {"code": 3, "message": "Server at capacity"}
            await first.send('421["echo","unaffected"]')
            assert await first.recv() == '431["unaffected"]'
