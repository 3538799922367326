"""examples/web2py under `tidings run`: gluon's pages and the seed's WebSocket controller on one port.

The example runs from a copy, since gluon writes sessions and folders into the tree it serves.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.raw_client import RawClient
from tests.serving import ROOT, TidingsProcess
from tidings.integrations import web2py

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsProcess]:
    tree = tmp_path_factory.mktemp("web2py") / "web2py"
    shutil.copytree(ROOT / "examples" / "web2py", tree, ignore=shutil.ignore_patterns("__pycache__"))
    running = TidingsProcess(f"{tree / 'app.py'}:app").start()
    yield running
    running.stop()


def ws_url(server: TidingsProcess, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def test_page_and_seed_controller_share_one_port(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/chat/default/index")
    assert page.status_code == 200
    assert "Visit 1 of this session" in page.text  # rendered by web2py's view of the default controller
    assert "WebSocket(`${scheme}://${location.host}/chat/ws/websocket`)" in page.text  # URL() at work

    sio = await RawClient.connect(server.url)
    assert await sio.call("subscribe", "chat") == [{"ok": True}]
    async with connect(ws_url(server, "/chat/ws/websocket")) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "Message received: hello"
        assert await sio.event() == ["message", "hello", "chat"]  # the model's process_message
        await ws.send("é ✓")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "Message received: é ✓"
    await sio.close()


async def test_plain_http_to_the_websocket_controller_gets_the_seeds_400(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.get("/chat/ws/websocket")
    assert reply.status_code == 400
    assert reply.text == "Invalid WebSocket request"


async def test_an_open_websocket_does_not_hold_the_users_session(server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        assert "Visit 1 of" in (await http.get("/chat/default/index")).text
        cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        async with connect(ws_url(server, "/chat/ws/websocket"), additional_headers={"Cookie": cookie}) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "Message received: hi"
            # web2py locks the session file for a whole request: without enable_websocket()
            # releasing it, this page would wait for the WebSocket to close.
            page = await asyncio.wait_for(http.get("/chat/default/index"), 5)
            assert "Visit 2 of" in page.text


def test_application_wants_a_web2py_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no VERSION file"):
        web2py.application(tmp_path)
