"""The webpy-socketio seed's main_app.py on tidings: `tidings run examples/webpy_app.py:application`.

Open http://127.0.0.1:8000/ in two browser tabs and chat: the page holds a plain WebSocket to the
``Room`` handler class. Socket.IO clients join the same rooms on the same port: they connect with
``?name=...``, ``emit("subscribe", "lobby")``, ``emit("message", text, "lobby")``, and get the room's
messages as ``message`` events.
"""

import web

import tidings
from tidings.events import on_message
from tidings.integrations import webpy
from tidings.integrations.webpy import socketio_urls

urls = (
    "/", "Index",
    "/ws", "Room",
)  # fmt: skip
urls += socketio_urls  # the seed's line; tidings answers /socket.io/ before web.py sees it


class Index:
    def GET(self):
        web.header("Content-Type", "text/html; charset=utf-8")
        return PAGE


class Room:
    """``/ws?room=lobby&name=ann``: a plain WebSocket held by a web.py handler class."""

    def GET(self):
        ws = webpy.websocket()  # web.py's 400 "Invalid WebSocket request" for a plain GET
        query = web.input(room="lobby", name="anonymous")  # web.ctx is web.py's own here
        ws.subscribe(query.room)
        while (message := ws.receive()) is not None:
            tidings.broadcast_channel(f"{query.name}: {message}", query.room)  # the sender included
        return ""


@tidings.on("connect")
def connect(request, socket, context):
    context["name"] = request.query.get("name") or webpy.ctx(request).ip


@on_message
def chat(request, socket, context, message, channel):
    if channel is not None:  # a message to a room: everyone in it, the sender included
        socket.send_and_broadcast_channel(f"{context['name']}: {message}", channel)


@tidings.on("whoami")
def whoami(request, socket, context):
    """What web.ctx held for the request that opened this connection."""
    ctx = webpy.ctx(request)
    return {"ip": ctx.ip, "host": ctx.host, "path": ctx.path, "query": ctx.query, "home": ctx.home}


PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>web.py + tidings</title></head>
<body>
  <h1>web.py + tidings</h1>
  <form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
  <ul id="log"></ul>
  <script>
    const name = encodeURIComponent(prompt("Your name?") || "anonymous");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?room=lobby&name=${name}`);
    const log = (text) => {
      const item = document.createElement("li");
      item.textContent = text;
      document.getElementById("log").append(item);
    };
    ws.onmessage = (event) => log(event.data);
    ws.onclose = () => log("(connection closed)");
    document.getElementById("form").onsubmit = (event) => {
      event.preventDefault();
      const input = document.getElementById("text");
      ws.send(input.value);
      input.value = "";
    };
  </script>
</body>
</html>
"""

# web.py's autoreload would run this module again when it changes, registering each handler twice.
app = web.application(urls, globals(), autoreload=False)
application = app.wsgifunc()
