"""Django beside tidings: the Django session and user of a Socket.IO connection.

``tidings run mysite.wsgi:application`` serves Django's ``get_wsgi_application()`` beside the
Socket.IO endpoint on one port. The request that opened a connection carries the browser's session
cookie, so a handler can load what ``request.session`` and ``request.user`` are in a Django view::

    from tidings.integrations import django as tidings_django

    @tidings.on("connect")
    def connect(request, socket, context):
        context["user"] = tidings_django.user(request)

Both helpers use the database (the default session engine does, the user lookup does): call them
from ``def`` handlers, which run in threads. In an ``async def`` handler Django raises
``SynchronousOnlyOperation``; there, ``await asyncio.to_thread(tidings_django.user, request)``.

A Django view holds a plain WebSocket through ``request.META["wsgi.websocket"]``.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.contrib.auth import get_user  # type: ignore[import-untyped]
from django.contrib.sessions.backends.base import SessionBase  # type: ignore[import-untyped]
from django.db import close_old_connections, connections  # type: ignore[import-untyped]

from tidings.api.request import Request


def session(request: Request) -> SessionBase:
    """The session named by the connection's session cookie (a new, empty one if none), loaded lazily.

    ``save()`` writes changes to an existing session; a new one's key never reaches the browser.
    """
    _recycle_connections()
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(request.cookies.get(settings.SESSION_COOKIE_NAME))


def user(request: Request) -> Any:
    """The user logged in to the connection's session, else an ``AnonymousUser``.

    As ``django.contrib.auth.get_user`` does for a view: a session whose password hash no longer
    matches (the password changed) is flushed and gives ``AnonymousUser``.
    """
    # get_user reads nothing of the request but its session.
    return get_user(SimpleNamespace(session=session(request)))


def _recycle_connections() -> None:
    # Django drops broken and expired (CONN_MAX_AGE) database connections when each HTTP request
    # starts and ends. Handler threads serve no HTTP request, so do it here, outside transactions.
    if not any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
        close_old_connections()
