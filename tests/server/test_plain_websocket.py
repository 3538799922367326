"""Plain WebSocket endpoints over real sockets: the `websockets` client against `tidings run`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import tidings
from tests.raw_client import RawClient
from tests.serving import ThreadedServer, TidingsProcess

TIMEOUT = 10


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/server/apps/endpoints.py:app").start()
    yield running
    running.stop()


def ws_url(server: TidingsProcess | ThreadedServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def closed(ws) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize(("path", "prefix"), [("/echo", "Message received: "), ("/aecho", "async: ")])
async def test_echo_text_and_binary(server: TidingsProcess, path: str, prefix: str) -> None:
    async with connect(ws_url(server, path)) as ws:
        await ws.send("hello")
        assert await ws.recv() == prefix + "hello"
        await ws.send(b"\x00\xff" * 100)
        assert await ws.recv() == b"\x00\xff" * 100
        await ws.send("é ✓")
        assert await ws.recv() == prefix + "é ✓"


async def test_close_code_and_reason_from_the_endpoint(server: TidingsProcess) -> None:
    async with connect(ws_url(server, "/close")) as ws:
        await ws.send("4001 bye now")
        assert await closed(ws) == (4001, "bye now")


async def test_endpoint_exception_closes_with_1011(server: TidingsProcess) -> None:
    async with connect(ws_url(server, "/fail")) as ws:
        await ws.send("go")
        assert (await closed(ws))[0] == 1011


async def test_receive_timeout(server: TidingsProcess) -> None:
    async with connect(ws_url(server, "/timeout")) as ws:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "timed out"
        assert (await closed(ws))[0] == 1000  # the handler returned


async def test_plain_http_to_an_endpoint_gets_400(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.get("/echo")
        assert reply.status_code == 400
        assert "WebSocket endpoint" in reply.text
        assert (await http.get("/")).text == "the app's own page"  # the WSGI app is served beside


async def test_oversize_message_closes_with_1009(server: TidingsProcess) -> None:
    async with connect(ws_url(server, "/echo"), max_size=None) as ws:
        await ws.send("x" * 10_001)
        assert (await closed(ws))[0] == 1009
    async with connect(ws_url(server, "/echo")) as ws:  # the server goes on
        await ws.send("x" * 9_000)
        assert len(await ws.recv()) == len("Message received: ") + 9_000


async def test_foreign_origin_gets_403(server: TidingsProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server, "/echo"), origin="http://elsewhere.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_200_blocking_endpoints_echo_at_once_without_cross_talk(server: TidingsProcess) -> None:
    async def converse(n: int) -> list[str]:
        async with connect(ws_url(server, "/echo")) as ws:
            got = []
            for i in range(5):
                await ws.send(f"{n}:{i}")
                got.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            return got

    conversations = await asyncio.gather(*(converse(n) for n in range(200)))
    for n, got in enumerate(conversations):
        assert got == [f"Message received: {n}:{i}" for i in range(5)]


async def test_a_channel_reaches_plain_websockets_and_socketio_clients(server: TidingsProcess) -> None:
    sio = await RawClient.connect(server.url)
    assert await sio.call("subscribe", "lobby") == [{"ok": True}]
    async with connect(ws_url(server, "/room?channel=lobby")) as plain:
        session_id = await plain.recv()
        await sio.emit("shout", {"from": "socket.io"}, "lobby")  # a JSON value: JSON text on a plain WS
        assert json.loads(await asyncio.wait_for(plain.recv(), TIMEOUT)) == {"from": "socket.io"}
        assert await sio.event() == ["message", {"from": "socket.io"}, "lobby"]
        await plain.send("from the plain one")
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "from the plain one"
        assert await sio.event() == ["message", "from the plain one", "lobby"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            reply = await http.get("/send", params={"session_id": session_id, "message": "to you alone"})
        assert reply.text == "1"
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "to you alone"
    await sio.close()


async def test_wsgi_view_holds_the_websocket(server: TidingsProcess) -> None:
    async with connect(ws_url(server, "/wsgi-ws")) as ws:
        await ws.send("from the seed")
        assert await ws.recv() == "wsgi: from the seed"
    with pytest.raises(InvalidStatus) as refused:  # the app's page does not hold a WebSocket
        async with connect(ws_url(server, "/somewhere")):
            pass
    assert refused.value.response.status_code == 400


async def test_beyond_max_sync_websockets_the_upgrade_gets_503(ws_protocol: str) -> None:
    handlers = tidings.Handlers()

    @handlers.websocket("/hold")
    def hold(ws):
        ws.receive()

    with ThreadedServer(tidings.Server(handlers=handlers, max_sync_websockets=2), ws_protocol) as running:
        async with connect(ws_url(running, "/hold")), connect(ws_url(running, "/hold")) as second:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(running, "/hold")):
                    pass
            assert refused.value.response.status_code == 503
            await second.send("done")  # frees a thread
            assert (await closed(second))[0] == 1000
            async with connect(ws_url(running, "/hold")) as third:
                await third.send("done")
                assert (await closed(third))[0] == 1000
