"""Flask and tidings on one port: `tidings run examples/flask_app.py:app`.

- ``POST /login`` (form field ``name``) puts a name in the Flask session.
- Socket.IO clients sending that session cookie are greeted by name; others are refused.
- ``/echo`` is a Flask view holding a plain WebSocket, the web2py seed's loop.

Views use ``flask.request`` (Flask's); handlers get ``request``, the tidings request of the connection.
"""

import os

import flask

import tidings
from tidings.integrations import flask as tidings_flask

app = flask.Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY", "dev only: set FLASK_SECRET_KEY")


@app.get("/")
def index():
    return f"hello, {flask.session.get('name', 'anonymous')}\n"


@app.post("/login")
def login():
    flask.session["name"] = flask.request.form["name"]
    return f"logged in as {flask.session['name']}\n"


@app.route("/echo", websocket=True)  # Werkzeug routes upgrades only to such rules; a plain GET gets 400
def echo():
    websocket = flask.request.environ.get("wsgi.websocket")
    if websocket is None:  # an upgrade, but from a server other than tidings
        flask.abort(400, "Invalid WebSocket request")
    name = flask.session.get("name", "anonymous")  # a WebSocket view runs in a request context too
    while (message := websocket.receive()) is not None:
        websocket.send(f"{name}: {message}")
    return ""


@tidings.on("connect")
def connect(request, socket, context):
    name = tidings_flask.session(app, request).get("name")
    if name is None:
        raise tidings.Refuse("log in first")
    context["name"] = name
    socket.emit("welcome", name)


@tidings.on("chat")
def chat(request, socket, context, text):
    return {"from": context["name"], "text": text}  # the ack
