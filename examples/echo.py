"""Echo server: `tidings run examples/echo.py:app`, then connect any Socket.IO client.

The page at / is a plain WSGI app served beside the Socket.IO endpoint on the same port.
"""

import tidings


@tidings.on("connect")
def connect(request, socket, context):
    context["count"] = 0
    socket.emit("welcome", f"hello {socket.session_id}")


@tidings.on("chat")
def chat(request, socket, context, text):
    context["count"] += 1
    return {"echo": text, "count": context["count"]}  # the ack, if the client asked for one


def page(environ, start_response):
    body = b"tidings echo example: connect a Socket.IO client to this host\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = tidings.Server(wsgi_app=page)
