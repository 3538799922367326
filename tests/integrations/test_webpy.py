"""examples/webpy_app.py under `tidings run`: web.py pages, a WebSocket handler class, web.ctx in handlers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import web
from websockets.asyncio.client import connect

from tests.raw_client import RawClient
from tests.serving import TidingsProcess
from tidings import Request
from tidings.integrations import webpy

TIMEOUT = 10


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("examples/webpy_app.py:application").start()
    yield running
    running.stop()


async def socketio_client(server: TidingsProcess, query: str) -> RawClient:
    """A WebSocket-only Socket.IO connection whose opening request carries ``query``."""
    ws = await connect(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket&{query}")
    assert (await ws.recv()).startswith("0{")
    await ws.send("40")
    connected = await ws.recv()
    assert isinstance(connected, str) and connected.startswith("40{"), connected
    return RawClient(ws, json.loads(connected[2:])["sid"], answer_pings=True)


async def test_page_websocket_view_and_socketio_share_one_port(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert "<h1>web.py + tidings</h1>" in page.text

    async with connect(f"ws://127.0.0.1:{server.port}/ws?room=lobby&name=ann") as plain:
        await plain.send("hi")  # web.input() read name and room in the handler class
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "ann: hi"

        sio = await socketio_client(server, "name=bob")
        assert await sio.call("subscribe", "lobby") == [{"ok": True}]
        await plain.send("hello")
        assert await sio.event() == ["message", "ann: hello", "lobby"]
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "ann: hello"
        await sio.emit("message", "yo", "lobby")
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "bob: yo"
        assert await sio.event() == ["message", "bob: yo", "lobby"]
        await sio.close()


async def test_plain_http_to_the_websocket_view_gets_webpys_400(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.get("/ws")
    assert reply.status_code == 400
    assert reply.text == "Invalid WebSocket request"


async def test_socketio_handler_reads_web_ctx_of_its_request(server: TidingsProcess) -> None:
    sio = await socketio_client(server, "name=bob")
    assert await sio.call("whoami") == [
        {
            "ip": "127.0.0.1",
            "host": f"127.0.0.1:{server.port}",
            "path": "/socket.io/",
            "query": "?EIO=4&transport=websocket&name=bob",
            "home": f"http://127.0.0.1:{server.port}",
        }
    ]
    await sio.close()
    anonymous = await socketio_client(server, "")  # no name: the connect handler took web.ctx.ip
    assert await anonymous.call("subscribe", "hall") == [{"ok": True}]
    await anonymous.emit("message", "hey", "hall")
    assert await anonymous.event() == ["message", "127.0.0.1: hey", "hall"]
    await anonymous.close()


def test_ctx_leaves_the_threads_own_web_ctx_alone() -> None:
    scope = {
        "type": "websocket",
        "path": "/socket.io/",
        "query_string": b"EIO=4&name=ann",
        "headers": [(b"host", b"example.org"), (b"cookie", b"a=1")],
        "client": ("10.0.0.7", 5000),
        "scheme": "wss",
    }
    web.ctx.clear()
    web.ctx.path = "/a/web.py/view"
    try:
        ctx = webpy.ctx(Request(scope))
        assert web.ctx.copy() == {"path": "/a/web.py/view"}
    finally:
        web.ctx.clear()
    assert (ctx.ip, ctx.host, ctx.path, ctx.query) == (
        "10.0.0.7",
        "example.org",
        "/socket.io/",
        "?EIO=4&name=ann",
    )
    assert ctx.env["HTTP_COOKIE"] == "a=1"
    assert (ctx.protocol, ctx.home) == ("https", "https://example.org")  # from the ASGI scheme "wss"


def test_socketio_urls_answer_503_when_webpy_runs_alone() -> None:
    class Index:
        def GET(self):
            return "page"

    urls = ("/", Index, *webpy.socketio_urls)
    alone = web.application(urls, {}, autoreload=False)
    assert alone.request("/").data == b"page"
    reply = alone.request("/socket.io/?EIO=4&transport=polling")
    assert reply.status == "503 Service Unavailable"
    assert b"tidings run" in reply.data
