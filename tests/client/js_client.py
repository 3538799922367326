"""tidings.js in a Node process (tests/node/tidings_js_client.mjs), driven by the tests of tests/client/."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from typing import Any

from tests.node_client import NodeClient
from tests.peers import NODE_DIR, node_packages
from tests.serving import ROOT

CLIENT = ROOT / "src" / "tidings" / "static" / "tidings.js"


def run_script(script: str) -> Any:
    """Runs ``node -e script`` with tidings.js's path as ``process.argv[1]``; returns its JSON output."""
    node_packages(NODE_DIR)
    result = subprocess.run(
        ["node", "-e", script, str(CLIENT)], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(result.stdout)


def driver_script() -> str:
    node_packages(NODE_DIR, "ws")
    return str(NODE_DIR / "tidings_js_client.mjs")


class Rejected(Exception):
    """A subscribe() or unsubscribe() promise was rejected."""


class JsClient(NodeClient):
    """tidings.js in a Node process; reports arrive as dicts.

    The ``a``-methods wait in a thread, so the test's event loop (and its python-socketio clients)
    keeps running meanwhile.
    """

    def __init__(self) -> None:
        super().__init__(driver_script())

    def connect(
        self, url: str, listen: tuple[str, ...] = ("message",), websocket: str = "standard", **opts: Any
    ) -> None:
        """``websocket``: "none" connects as a page without ``window.WebSocket``; "reporting" has its
        WebSocket report each text message (``ws-message``) once tidings.js has handled it."""
        self.command("connect", url=url, opts=opts, listen=list(listen), webSocket=websocket)

    async def wait(self, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.expect, kind, timeout, **match)

    async def connected(self, url: str, **options: Any) -> str:
        """Connects and returns the Socket.IO sid."""
        self.connect(url, **options)
        return (await self.wait("connect"))["id"]

    def start(self, op: str, **fields: Any) -> int:
        """Sends a command that reports an ack; returns the ack's id."""
        ack = next(self._ack_ids)
        self.command(op, ack=ack, **fields)
        return ack

    async def acked(self, ack: int, timeout: float = 10) -> Any:
        report = await self.wait("ack", timeout, id=ack)
        if "error" in report:
            raise Rejected(report["error"])
        return report["args"]

    async def acall(self, event: str, *args: Any) -> list[Any]:
        return await self.acked(self.start("emit", event=event, args=list(args)))

    async def asend(self, message: Any, channel: str | None = None) -> list[Any]:
        return await self.acked(self.start("send", message=message, channel=channel))

    async def subscribe(self, channel: Any) -> Any:
        return (await self.acked(self.start("subscribe", channel=channel)))[0]

    async def unsubscribe(self, channel: str) -> Any:
        return (await self.acked(self.start("unsubscribe", channel=channel)))[0]

    async def aevent(self, name: str) -> list[Any]:
        return (await self.wait("event", event=name))["args"]

    async def inspect(self) -> dict[str, Any]:
        self.command("inspect")
        return await self.wait("inspect")


def view(data: bytes, kind: str) -> dict[str, str]:
    """``data`` sent by the driver as a typed array or DataView of that kind (over a larger buffer)."""
    return {"$bin": base64.b64encode(data).decode(), "$view": kind}


async def settled(js: JsClient) -> dict[str, Any]:
    """The driver's state once no socket of it is open; with a reconnect pending it never settles."""
    for _ in range(200):  # a guard: closing takes a few milliseconds on localhost
        state = await js.inspect()
        if "TCPSocketWrap" not in state["resources"]:
            return state
    raise AssertionError(f"the client keeps a socket open: {state}")
