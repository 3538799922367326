"""python-socketio side of the fan-out benchmark, on uvicorn: same event, same payload."""

import socketio

PAYLOAD = "x" * 100
sio = socketio.AsyncServer(async_mode="asgi")


@sio.on("burst")
async def burst(sid, count):
    for _ in range(count):
        await sio.emit("news", PAYLOAD)


app = socketio.ASGIApp(sio)
