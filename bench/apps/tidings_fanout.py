"""tidings side of the fan-out benchmark: `burst n` broadcasts n 100-byte events to everyone."""

import tidings

PAYLOAD = "x" * 100
handlers = tidings.Handlers()


@handlers.on("burst")
async def burst(request, socket, context, count):
    for _ in range(count):
        app.emit("news", PAYLOAD)


app = tidings.Server(handlers=handlers)
