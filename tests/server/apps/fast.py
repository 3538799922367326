"""An app for `tidings run --ws fast`: Socket.IO, plain endpoints and the user's own ASGI WebSocket route."""

from __future__ import annotations

import asyncio

import tidings

handlers = tidings.Handlers()


@handlers.websocket("/aecho")
async def aecho(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message)


@handlers.on("flood")
async def flood(request, socket, context, count, size):
    """Sends ``count`` messages of ``size`` characters, one per loop iteration."""
    for i in range(count):
        socket.send(f"{i:08d}" + "x" * size)
        await asyncio.sleep(0)


async def user_app(scope, receive, send):
    """The user's own ASGI app: an HTTP page and a WebSocket route that tidings does not know."""
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"user page"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    if scope["path"] == "/user-refused":
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/user-teapot":
        await send({"type": "websocket.http.response.start", "status": 418, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"short and stout", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"!"})
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-user", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close":
            await send({"type": "websocket.close", "code": 4003, "reason": "user says bye"})
            continue
        if text is not None:
            await send({"type": "websocket.send", "text": "user: " + text + " " + scope["path"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


app = tidings.Server(asgi_app=user_app, handlers=handlers, max_payload=10_000, max_buffer=256 * 1024)
