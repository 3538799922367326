"""An app that serves its metrics: the handlers of tests/server/test_metrics.py's known run."""

from __future__ import annotations

import os

import tidings

handlers = tidings.Handlers()


@handlers.websocket("/echo")
async def echo(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message)


@handlers.on("chat")
def chat(request, socket, context, text):
    return text.upper()


@handlers.on("boom")
def boom(request, socket, context):
    raise RuntimeError("boom, on purpose")


@handlers.on("shout")
def shout(request, socket, context, text):
    socket.broadcast_channel(text, "room")


@handlers.on("flood")
async def flood(request, socket, context, count, size):
    for _ in range(count):
        socket.emit("chunk", "x" * size)


@handlers.on("pid")
def pid(request, socket, context):
    """Which worker process serves this connection."""
    return os.getpid()


def make_server(**settings: object) -> tidings.Server:
    options: dict[str, object] = {
        "metrics_path": "/metrics",
        "history": [("^news$", 10, 60)],
        **settings,
    }
    return tidings.Server(handlers=handlers, **options)


server = make_server()
