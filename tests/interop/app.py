"""The server the interop tests run with `tidings run tests/interop/app.py:app`."""

from __future__ import annotations

import tidings

handlers = tidings.Handlers()


@handlers.on("connect")
def connect(request, socket, context):
    if socket.auth.get("token") == "bad":
        raise tidings.Refuse("bad token", {"code": 42})
    context["seen"] = []
    socket.emit("welcome", socket.session_id, request.query.get("EIO"))


@handlers.on("echo")
def echo(request, socket, context, *args):
    """Acks with the arguments it got (bytes included)."""
    return args


@handlers.on("echo_back")
async def echo_back(request, socket, context, *args):
    """Sends the arguments back as a server event (server to client, bytes included)."""
    socket.emit("echoed", *args)


@handlers.on("ask")
def ask(request, socket, context, question):
    """A blocking server→client call from a def handler; acks with the client's answer."""
    return {"answer": socket.call("question", question, timeout=5)}


@handlers.on("ask_async")
async def ask_async(request, socket, context, question):
    return {"answer": await socket.acall("question", question, timeout=5)}


@handlers.on("seq")
def seq(request, socket, context, n):
    context["seen"].append(n)


@handlers.on("seen")
def seen(request, socket, context):
    return context["seen"]


@handlers.on("kick")
def kick(request, socket, context):
    socket.disconnect()


@handlers.on("fail")
def fail(request, socket, context):
    raise RuntimeError("handler failure on purpose")


@handlers.on("shout")
def shout(request, socket, context, text):
    app.emit("shouted", text)


@handlers.on("connect", namespace="/admin")
def admin_connect(request, socket, context):
    if socket.auth.get("role") != "admin":
        raise tidings.Refuse("admins only")


@handlers.on("whoami", namespace="/admin")
async def whoami(request, socket, context):
    return {"namespace": socket.namespace, "auth": socket.auth}


def page(environ, start_response):
    body = b"the app's own page"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = tidings.Server(wsgi_app=page, handlers=handlers, ping_interval=1.0, ping_timeout=2.0)
