"""python-socketio side of the benchmark suite: `AsyncServer` on uvicorn, configured as `tidings run` is.

Run: python bench/apps/psio_app.py PORT. uvicorn gets the options `tidings run` gives it (uvloop,
httptools, the `websockets` protocol, no WebSocket-level pings, no per-message compression), so the
two Python servers differ only above the ASGI interface.

- subscribe(room): `enter_room`, acked with {"ok": true} (what tidings answers);
- publish(message): `emit("message", (message, "room"), room="room")`: the same packet tidings and
  Node send, `42["message",<message>,"room"]`;
- echo(payload): acked with the payload;
- echo_def(payload): the same by a `def` handler, which `AsyncServer` calls on the event loop (it has
  no thread pool).
"""

import sys
import warnings

import socketio
import uvicorn

ROOM = "room"
sio = socketio.AsyncServer(async_mode="asgi")


@sio.on("subscribe")
async def subscribe(sid, room):
    await sio.enter_room(sid, room)
    return {"ok": True}


@sio.on("publish")
async def publish(sid, message):
    await sio.emit("message", (message, ROOM), room=ROOM)


@sio.on("echo")
async def echo(sid, payload):
    return payload


@sio.on("echo_def")
def echo_def(sid, payload):
    return payload


app = socketio.ASGIApp(sio)


def main() -> None:
    port = int(sys.argv[1])
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        ws_max_size=1_000_000,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
