"""A bare Socket.IO client over `websockets`: cheap enough for hundreds, and free to misbehave."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


class RawClient:
    """One WebSocket-only Socket.IO connection to namespace "/", speaking the wire format itself."""

    def __init__(self, ws: ClientConnection, session_id: str, answer_pings: bool) -> None:
        self.ws = ws
        self.session_id = session_id
        self.answer_pings = answer_pings

    @classmethod
    async def connect(
        cls,
        base_url: str,
        answer_pings: bool = True,
        query: dict[str, str] | None = None,
        source: str | None = None,
    ) -> RawClient:
        """Connect to ``base_url`` with ``query`` added to the URL, from the address ``source`` (if given)."""
        url = base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        if query:
            url += "&" + urllib.parse.urlencode(query)
        local = {"local_addr": (source, 0)} if source is not None else {}
        ws = await connect(url, compression=None, max_size=None, **local)
        opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0{"), opened
        await ws.send("40")
        connected = await ws.recv()
        assert isinstance(connected, str) and connected.startswith("40{"), connected
        return cls(ws, json.loads(connected[2:])["sid"], answer_pings)

    async def emit(self, event: str, *args: Any, ack_id: int | None = None) -> None:
        await self.ws.send(f"42{'' if ack_id is None else ack_id}{json.dumps([event, *args])}")

    async def call(self, event: str, *args: Any, timeout: float = 10) -> list[Any]:
        """Emit with ack id 1 and return the ack's arguments (events before it are dropped)."""
        await self.emit(event, *args, ack_id=1)
        while True:
            packet = await self.receive(timeout)
            if packet.startswith("431"):
                return json.loads(packet[3:])

    async def event(self, timeout: float = 10) -> list[Any]:
        """The next event's ``[name, *args]``."""
        while True:
            packet = await self.receive(timeout)
            if packet.startswith("42"):
                return json.loads(packet[2:])

    async def receive(self, timeout: float = 10) -> str:
        """The next Engine.IO packet that is not a ping (pings are answered if ``answer_pings``)."""
        while True:
            packet = await asyncio.wait_for(self.ws.recv(), timeout)
            assert isinstance(packet, str), packet
            if packet != "2":
                return packet
            if self.answer_pings:
                await self.ws.send("3")

    async def close(self) -> None:
        await self.ws.close()
