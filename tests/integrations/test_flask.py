"""examples/flask_app.py under `tidings run`: the Flask session in Socket.IO handlers and WebSocket views."""

from __future__ import annotations

import httpx

from tests.integrations.logins import stranger_is_refused, websocket_view_knows_the_user
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

        await stranger_is_refused(server.url)
        await websocket_view_knows_the_user(server.url.replace("http", "ws", 1) + "/echo", cookie, "alice")
