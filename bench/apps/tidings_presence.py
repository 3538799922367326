"""tidings side of the presence benchmark: `pres-*` channels have presence, with the client's name."""

import tidings

handlers = tidings.Handlers()


@handlers.on_connect
def named(request, socket, context):
    socket.presence_info = {"name": request.query.get("name", "")}


# The load generator is one client address: the per-address session limits (made for a hostile
# client, see docs/server.md) are lifted to the process's own.
app = tidings.Server(
    handlers=handlers,
    presence=["^pres-"],
    max_sessions_per_address=100_000,
    session_burst_per_address=100_000,
    session_rate_per_address=100_000,
)
