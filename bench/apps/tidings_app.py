"""tidings side of the benchmark suite, on the default runner: `tidings run bench/apps/tidings_app.py:app`.

The channel is tidings' own: clients emit `subscribe` (built in, acked with {"ok": true}) and get
`message` events with `(message, "room")`.

- publish(message): `socket.broadcast_channel(message, "room")` — the publisher is not in the room,
  so every subscriber gets it; encoded once for all of them.
- echo(payload): acked with the payload, by an `async def` handler (runs on the event loop);
- echo_def(payload): the same by a `def` handler (runs in the handler thread pool), what the seeds'
  users write.
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


@handlers.on("echo_def")
def echo_def(request, socket, context, payload):
    return payload


# The load generator is one client address (bench/scale.py's, a few): the per-address session and
# connection limits (made for a hostile client, see docs/server.md) are lifted to the process's own.
app = tidings.Server(
    handlers=handlers,
    max_connections_per_address=100_000,
    max_sessions_per_address=100_000,
    session_burst_per_address=100_000,
    session_rate_per_address=100_000,
)
