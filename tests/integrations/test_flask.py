"""examples/flask_app.py under `tidings run`: the Flask session in Socket.IO handlers and WebSocket views."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import socketio
from websockets.asyncio.client import connect

from tests.python_client import PythonClient
from tests.serving import tidings_process

TIMEOUT = 10


async def test_flask_session_reaches_socketio_and_websocket_views() -> None:
    with tidings_process("examples/flask_app.py:app") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).text == "hello, anonymous\n"
            assert (await http.post("/login", data={"name": "alice"})).text == "logged in as alice\n"
            assert (await http.get("/")).text == "hello, alice\n"  # the cookie holds the session
            cookie = f"session={http.cookies['session']}"
            assert (await http.get("/echo")).status_code == 400  # a WebSocket view, asked over HTTP

        client = PythonClient("async")
        await client.connect(server.url, transports=["websocket"], headers={"Cookie": cookie})
        assert await client.event("welcome") == ("alice",)
        assert await client.call("chat", "hi") == {"from": "alice", "text": "hi"}
        await client.disconnect()

        stranger = PythonClient("async")  # no cookie: the connect handler finds no name and refuses
        with pytest.raises(socketio.exceptions.ConnectionError):
            await stranger.connect(server.url, transports=["websocket"])
        assert await stranger.event("connect_error") == ({"message": "log in first"},)

        ws_url = server.url.replace("http", "ws", 1) + "/echo"
        async with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "alice: hello"
        async with connect(ws_url) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "anonymous: hello"
