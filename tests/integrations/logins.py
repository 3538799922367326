"""What the Flask and Django tests check alike, once logged in: strangers are refused, views see users."""

from __future__ import annotations

import asyncio

import pytest
import socketio
from websockets.asyncio.client import connect

from tests.python_client import PythonClient

TIMEOUT = 10


async def stranger_is_refused(url: str) -> None:
    """A Socket.IO client without the session cookie: the connect handler refuses it."""
    stranger = PythonClient("async")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stranger.connect(url, transports=["websocket"])
    assert await stranger.event("connect_error") == ({"message": "log in first"},)


async def websocket_view_knows_the_user(ws_url: str, cookie: str, name: str) -> None:
    """The framework's WebSocket view answers as the logged-in user with the cookie, as anonymous without."""
    async with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"{name}: hello"
    async with connect(ws_url) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "anonymous: hello"
