"""The floor of the Python servers' stack: uvicorn + `websockets` with an ASGI app that does nothing.

Run: python bench/apps/asgi_floor.py PORT. It accepts the WebSocket, sends the Engine.IO open packet
and answers the namespace connect, the least the generator's clients need, with uvicorn configured as
`tidings run` configures it. What tidings and python-socketio cost above this is their own; what this
costs is uvicorn's and `websockets`'. Only for idle memory and connection rate
(`python -m bench --servers uvicorn-floor`).
"""

import sys
import warnings

import uvicorn

OPEN = '0{"sid":"floor","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": OPEN})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if (message.get("text") or "").startswith("40"):
            await send({"type": "websocket.send", "text": '40{"sid":"floor"}'})
        elif message.get("text") == "3":
            continue


def main() -> None:
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        ws_ping_interval=None,
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
