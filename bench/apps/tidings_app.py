"""tidings side of the benchmark suite, on the default runner: `tidings run bench/apps/tidings_app.py:app`.

The channel is tidings' own: clients emit `subscribe` (built in, acked with {"ok": true}) and get
`message` events with `(message, "room")`.

- publish(message): `socket.broadcast_channel(message, "room")` — the publisher is not in the room,
  so every subscriber gets it; encoded once for all of them.
- echo(payload): acked with the payload.
"""

import tidings

ROOM = "room"
handlers = tidings.Handlers()


@handlers.on("publish")
async def publish(request, socket, context, message):
    socket.broadcast_channel(message, ROOM)


@handlers.on("echo")
async def echo(request, socket, context, payload):
    return payload


app = tidings.Server(handlers=handlers)
