"""A Starlette app served by tidings: `tidings run examples/starlette_app.py:app`.

Starlette keeps its own HTTP and WebSocket routes and its lifespan; tidings answers ``/socket.io/``
and its WebSocket endpoint ``/echo`` on the same port, and hands every other request to Starlette.
"""

import contextlib

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

import tidings


@contextlib.asynccontextmanager
async def lifespan(site):
    site.state.greeting = "hello from Starlette"  # tidings passes the lifespan events on
    yield


async def home(request):
    return PlainTextResponse(request.app.state.greeting + "\n")


async def shout(websocket):  # Starlette's own WebSocket route
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


site = Starlette(routes=[Route("/", home), WebSocketRoute("/shout", shout)], lifespan=lifespan)


@tidings.on("chat")
async def chat(request, socket, context, text):
    return {"echo": text}


@tidings.websocket("/echo")
async def echo(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message)


app = tidings.Server(asgi_app=site)
