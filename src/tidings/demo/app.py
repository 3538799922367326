"""The demo's web.py app: the room list, a room's page, their CSS and script; and the server.

``tidings demo`` runs :data:`server` (as ``tidings run tidings.demo.app:server`` would): the web.py
pages and tidings' Socket.IO endpoint on one port, with the handlers of :mod:`tidings.demo.chat`.
Templates and static files are read from this package, wherever it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import web  # type: ignore[import-untyped]

import tidings
from tidings.demo import chat

HERE = Path(__file__).resolve().parent
STATIC = {"demo.css": "text/css; charset=utf-8", "room.js": "text/javascript; charset=utf-8"}
# No Content-Security-Policy: it would also forbid the string predicates that browser test drivers
# (Playwright's wait_for_function) evaluate in the page. User text is escaped all the same.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}

render = web.template.render(
    str(HERE / "templates"),
    cache=True,  # else web.py, in its default debug mode, compiles them again for every page
    base="layout",
    globals={"script_tag": tidings.script_tag, "ROOM_RULE": chat.ROOM_RULE},
)

urls = (
    "/", "Rooms",
    "/new", "NewRoom",
    "/room/([^/]*)", "Room",
    "/static/([^/]*)", "Static",
)  # fmt: skip


def room_list(error: str | None = None, name: str = "") -> Any:
    """The room list page; with ``error``, the refusal of room ``name``, as a 400."""
    status = "200 OK" if error is None else "400 Bad Request"
    try:
        rooms = chat.rooms()
    except tidings.BrokerError as problem:
        rooms, error, status = [], f"the room list is unavailable: {problem}", "503 Service Unavailable"
    web.ctx.status = status
    return render.rooms(rooms, error, name)


class Rooms:
    def GET(self) -> Any:
        return room_list()


class NewRoom:
    """The room list's form: ``/new?name=x`` takes the browser to ``/room/x``."""

    def GET(self) -> Any:
        name = web.input(name="").name.strip()
        error = chat.room_error(name)
        if error is not None:
            return room_list(error, name)
        raise web.seeother(f"/room/{name}")


class Room:
    """``/room/<name>``: any valid name is a room, listed once somebody is in it."""

    def GET(self, name: str) -> Any:
        error = chat.room_error(name)
        if error is not None:
            return room_list(error, name)
        return render.room(name)


class Static:
    def GET(self, name: str) -> bytes:
        content_type = STATIC.get(name)
        if content_type is None:
            raise web.notfound("Not Found")
        web.header("Content-Type", content_type)
        web.header("Cache-Control", "no-cache")
        return (HERE / "static" / name).read_bytes()


def security_headers(handler: Callable[[], Any]) -> Any:
    """A web.py processor: every response gets :data:`SECURITY_HEADERS`; pages are HTML."""
    for name, value in SECURITY_HEADERS.items():
        web.header(name, value)
    result = handler()
    web.header("Content-Type", "text/html; charset=utf-8", unique=True)
    return result


def internal_error() -> Any:
    """A plain 500, instead of web.py's debug page with the traceback (which goes to the log)."""
    return web.HTTPError("500 Internal Server Error", {"Content-Type": "text/plain"}, "Internal Server Error")


# autoreload=False: web.py's reloader would import this module again, creating a second server.
app = web.application(urls, globals(), autoreload=False)
app.add_processor(security_headers)
app.internalerror = internal_error
application = app.wsgifunc()

server = tidings.Server(wsgi_app=application, handlers=chat.handlers, presence=chat.PRESENCE)
