"""A blocking (def) and an async WebSocket endpoint that wait for messages: the idle-cost benchmark."""

import tidings

handlers = tidings.Handlers()


@handlers.websocket("/sync")
def sync_echo(ws):
    while (message := ws.receive()) is not None:
        ws.send(message)


@handlers.websocket("/async")
async def async_echo(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message)


app = tidings.Server(handlers=handlers)
