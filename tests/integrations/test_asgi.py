"""Starlette and FastAPI: hosted by tidings (`Server(asgi_app=...)`) and hosting it (mounted)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from websockets.asyncio.client import connect

import tidings
from tests.python_client import PythonClient
from tests.raw_client import RawClient
from tests.serving import ThreadedServer, tidings_process
from tidings.api.request import route_path

TIMEOUT = 10


def ws_url(base: str, path: str) -> str:
    return base.replace("http", "ws", 1) + path


async def echoes(url: str, text: str) -> str:
    async with connect(url) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def test_starlette_app_served_by_tidings() -> None:
    with tidings_process("examples/starlette_app.py:app") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).text == "hello from Starlette\n"  # its lifespan ran
            assert (await http.get("/nowhere")).status_code == 404  # Starlette's own 404
        assert await echoes(ws_url(server.url, "/shout"), "hey") == "HEY"  # Starlette's WebSocket
        assert await echoes(ws_url(server.url, "/echo"), "hey") == "hey"  # tidings' endpoint
        client = await RawClient.connect(server.url)
        assert await client.call("chat", "hi") == [{"echo": "hi"}]
        await client.close()


async def test_fastapi_app_mounting_tidings() -> None:
    with tidings_process("examples/fastapi_app.py:app") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).json() == {"started": True}  # FastAPI's lifespan ran
            assert (await http.post("/login", params={"name": "alice"})).json() == {"name": "alice"}
            cookie = f"session={http.cookies['session']}"
            assert (await http.get("/rt/echo")).status_code == 400  # a WebSocket endpoint, over HTTP

            client = PythonClient("async")  # polling first, then the upgrade: both through the mount
            await client.connect(server.url, socketio_path="/rt/socket.io", headers={"Cookie": cookie})
            await client.wait_for_transport("websocket")
            expected = {"echo": "hi", "name": "alice", "path": "/rt/socket.io/"}
            assert await client.call("chat", "hi") == expected  # FastAPI's session, in a handler
            assert (await http.post("/notify", params={"text": "news!"})).json() == {"sent": "news!"}
            assert await client.event("news") == ("news!",)
            await client.disconnect()
        assert await echoes(ws_url(server.url, "/rt/echo"), "hey") == "hey"
        assert await echoes(ws_url(server.url, "/ws"), "hey") == "HEY"  # FastAPI's own WebSocket


def page(environ, start_response):
    """A WSGI app hosted by the mounted Server: says where it thinks it is, over HTTP or WebSocket."""
    where = f"{environ['SCRIPT_NAME']} {environ['PATH_INFO']}"
    websocket = environ.get("wsgi.websocket")
    if websocket is not None:
        websocket.receive()  # answer what the client sends: closing before it sent would race it
        websocket.send(where)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [where.encode()]


async def test_starlette_mount_routes_below_the_root_path() -> None:
    handlers = tidings.Handlers()

    @handlers.on("where")
    def where(request, socket, context):
        return [request.path, request.environ["SCRIPT_NAME"], request.environ["PATH_INFO"]]

    realtime = tidings.Server(wsgi_app=page, handlers=handlers)
    outer = Starlette(routes=[Route("/", lambda request: PlainTextResponse("outer")), Mount("/rt", realtime)])
    with ThreadedServer(outer) as server:  # plain uvicorn: no lifespan reaches the mounted Server
        client = PythonClient("async")
        await client.connect(server.url, socketio_path="/rt/socket.io", transports=["polling"])
        assert await client.call("where") == ["/rt/socket.io/", "/rt", "/socket.io/"]
        await client.disconnect()
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).text == "outer"
            assert (await http.get("/rt/page")).text == "/rt /page"  # the hosted WSGI app, via a2wsgi
            handshake = {"EIO": "4", "transport": "polling"}
            assert (await http.get("/socket.io/", params=handshake)).status_code == 404  # only below /rt
        assert await echoes(ws_url(server.url, "/rt/view"), "") == "/rt /view"  # a WSGI WebSocket view


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/socket.io/", "", "/socket.io/"),
        ("/rt/socket.io/", "/rt", "/socket.io/"),
        ("/rt/socket.io/", "/rt/", "/socket.io/"),
        ("/rt", "/rt", "/"),
        ("/rtx/socket.io/", "/rt", "/rtx/socket.io/"),  # a prefix of the name, not of the path
        ("/socket.io/", "/rt", "/socket.io/"),  # a server that took the root_path off already
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == expected
