"""web2py beside tidings: gluon's WSGI app served by ``tidings run``, and ``request.websocket``.

The web2py seed's controller runs as written::

    def websocket():
        if request.websocket:
            websocket = request.websocket
            while True:
                message = websocket.receive()
                ...
        else:
            raise HTTP(400, "Invalid WebSocket request")

Two lines make that work. The server module, ``tidings run app.py:app``::

    app = web2py.application("/path/to/web2py")   # the folder with VERSION and applications/

and a model file of the application, which web2py runs before every controller::

    from tidings.integrations.web2py import enable_websocket
    enable_websocket()

gluon copies the WSGI environ into ``request.env`` (dots become underscores), so the connection that
tidings puts in ``environ["wsgi.websocket"]`` is ``request.env.wsgi_websocket``; ``enable_websocket``
names it ``request.websocket``, None on plain HTTP requests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from gluon.globals import current  # type: ignore[import-untyped]
from gluon.settings import global_settings  # type: ignore[import-untyped]

from tidings.server.plain_websocket import WebSocket

__all__ = ["application", "enable_websocket"]


def application(folder: str | os.PathLike[str]) -> Any:
    """gluon's WSGI app (``gluon.main.wsgibase``) serving the web2py tree at ``folder``.

    ``folder`` holds ``VERSION`` and ``applications/`` (and ``routes.py``, if any), as a web2py
    checkout does; gluon reads its version from that file and creates ``deposit/``, ``logs/`` and
    ``site-packages/`` there, and each application's missing folders (``sessions/``, ``errors/`` ...).
    gluon keeps its settings in globals, so a process serves one web2py tree.
    """
    path = Path(folder).resolve()
    if not (path / "VERSION").is_file():
        raise FileNotFoundError(f"{path} has no VERSION file: gluon needs one (e.g. 'Version 2.26.1-stable')")
    loaded = "gluon.main" in sys.modules
    if loaded and global_settings.applications_parent != str(path):
        raise RuntimeError(f"gluon serves {global_settings.applications_parent} in this process already")
    # What web2py's own wsgihandler.py does, without its chdir: gluon finds every file through these.
    global_settings.gluon_parent = global_settings.applications_parent = str(path)
    global_settings.web2py_runtime_handler = True  # no Rocket server, no Tk message boxes
    import gluon.main  # type: ignore[import-untyped]

    return gluon.main.wsgibase


def enable_websocket() -> WebSocket | None:
    """Set ``request.websocket`` for the current web2py request: the connection, or None.

    Call it from a model file. On a WebSocket request it also releases the session file, as
    ``session.forget(response)`` does: web2py locks that file until the request ends, and a
    WebSocket request lasts as long as the connection, so the user's other pages would wait for it.
    The controller still reads ``session``; what it changes there is not saved.
    """
    ws: WebSocket | None = current.request.env.wsgi_websocket
    current.request.websocket = ws
    if ws is not None:
        current.session.forget(current.response)
    return ws
