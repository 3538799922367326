"""FastAPI with tidings mounted at /rt: `tidings run examples/fastapi_app.py:app` (or uvicorn).

Socket.IO clients connect with the path ``/rt/socket.io`` (JavaScript: ``io({path: "/rt/socket.io"})``,
python-socketio: ``socketio_path="/rt/socket.io"``); the plain WebSocket endpoint is ``/rt/echo``.
FastAPI keeps everything else: ``POST /login?name=...`` sets its session, which the Socket.IO handlers
read, and ``POST /notify?text=...`` reaches every Socket.IO client.
"""

import contextlib
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from starlette.middleware.sessions import SessionMiddleware

import tidings

# A registry of its own: `tidings run` wraps a bare FastAPI app in a default Server, which serves
# the default registry (tidings.on) at /socket.io/; these handlers belong to the one at /rt.
handlers = tidings.Handlers()
realtime = tidings.Server(handlers=handlers)


@handlers.on("connect")
def connect(request, socket, context):
    # Mounted, tidings' requests pass through FastAPI's middleware: the session is in the scope.
    context["name"] = request.scope["session"].get("name", "anonymous")


@handlers.on("chat")
async def chat(request, socket, context, text):
    return {"echo": text, "name": context["name"], "path": request.path}


@handlers.websocket("/echo")
async def echo(ws):
    while (message := await ws.receive()) is not None:
        await ws.send(message)


@contextlib.asynccontextmanager
async def lifespan(api):
    api.state.started = True
    yield
    realtime.shutdown()  # a mount gets no lifespan events: close tidings' connections with the app


app = FastAPI(lifespan=lifespan)
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SESSION_SECRET", "dev only"))
app.mount("/rt", realtime)


@app.get("/")
async def home():
    return {"started": app.state.started}


@app.post("/login")
def login(request: Request, name: str):
    request.session["name"] = name
    return {"name": name}


@app.post("/notify")
def notify(text: str):
    realtime.emit("news", text)  # safe from FastAPI's worker threads
    return {"sent": text}


@app.websocket("/ws")
async def shout(websocket: WebSocket):  # FastAPI's own WebSocket route
    await websocket.accept()
    try:
        while True:
            await websocket.send_text((await websocket.receive_text()).upper())
    except WebSocketDisconnect:
        pass
