"""tidings side of the fan-out benchmark: `burst n` broadcasts n 100-byte events to everyone."""

import tidings

PAYLOAD = "x" * 100
handlers = tidings.Handlers()


@handlers.on("burst")
async def burst(request, socket, context, count):
    for _ in range(count):
        app.emit("news", PAYLOAD)


# The load generator is one client address: the per-address session limits (made for a hostile
# client, see docs/server.md) are lifted to the process's own.
app = tidings.Server(
    handlers=handlers,
    max_sessions_per_address=100_000,
    session_burst_per_address=100_000,
    session_rate_per_address=100_000,
)
