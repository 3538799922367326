"""Flask beside tidings: the Flask session of a Socket.IO connection.

``tidings run app.py:app`` serves a Flask app beside the Socket.IO endpoint on one port. The request
that opened a connection carries the browser's cookies, so a handler can open the session Flask's own
views see, through the app's ``session_interface``::

    from tidings.integrations import flask as tidings_flask

    @tidings.on("connect")
    def connect(request, socket, context):
        context["name"] = tidings_flask.session(app, request).get("name")

A Flask view holds a plain WebSocket through ``request.environ["wsgi.websocket"]``; it runs in a
request context of its own, so ``flask.session`` works there as in any view.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from flask import Flask
from flask.ctx import RequestContext
from flask.sessions import SessionMixin

from tidings.api.request import Request


def request_context(app: Flask, request: Request) -> RequestContext:
    """A Flask request context for the connection's opening request.

    Inside ``with request_context(app, request):``, ``flask.session``, ``flask.g`` and extensions
    that read them (Flask-Login's ``current_user``) work as in a view; when the block ends, the
    app's teardown functions run as at the end of a request.
    """
    # A copy: Werkzeug writes into the environ, and the connection's request is shared by handlers.
    environ: dict[str, Any] = {**request.environ, "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
    return app.request_context(environ)


def session(app: Flask, request: Request) -> SessionMixin:
    """The Flask session named by the connection's cookies (empty if none or if it does not verify).

    Read-only in effect: there is no response to carry a changed cookie back to the browser.
    """
    with request_context(app, request) as context:
        return context.session
