"""What ``tidings run TARGET`` serves: the target imported and turned into a :class:`Server`, with
the broker ``--broker`` names, checked before anything is served.

A target that cannot be found (no such module, file or attribute) or that is no app exits with one
line saying what was tried and what to do. An exception raised while the user's module runs is
their bug, and keeps its traceback: that includes a ``ModuleNotFoundError`` for one of its imports.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tidings.brokers import BrokerError, broker_from
from tidings.server.app import Server

#: The target of `tidings run`, for its worker processes (see :func:`app_from_environment`).
TARGET_ENV = "TIDINGS_APP"
#: Set by `tidings run --broker`, for the worker processes: the flag wins over the app's own broker.
BROKER_FLAG_ENV = "TIDINGS_RUN_BROKER"
#: Where each kind of app comes from, for the line that refuses an object that is none of them.
ACCEPTED = (
    "give a tidings.Server, a WSGI app (called with environ, start_response: a Flask app, Django's "
    "get_wsgi_application(), web.py's web.application or its wsgifunc(), web2py's "
    "tidings.integrations.web2py.application(...)) or an ASGI app (async, called with scope, receive, "
    "send: FastAPI, Starlette, Django's get_asgi_application())"
)
#: The demo's framework is an extra, not a dependency of tidings.
DEMO_EXTRA = (
    "tidings: the demo needs web.py: pip install 'tidings[demo]' (from a checkout: pip install -e '.[demo]')"
)


def load_target(target: str) -> Server:
    """Import ``module:attr`` or ``path/to/file.py:attr`` (attr defaults to ``app``) as a Server.

    A WSGI app, an ASGI app or a web.py ``web.application`` is wrapped in a default Server that
    serves it beside the Engine.IO endpoint (:func:`as_server`).
    """
    location, _, attribute = target.partition(":")
    if not location:
        raise SystemExit(f"tidings: no module in {target!r}: give module:NAME or path/to/file.py:NAME")
    is_file = location.endswith(".py") or os.sep in location
    module = _import_file(location) if is_file else _import_module(location)
    obj: Any = module
    for name in (attribute or "app").split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            where = f"{location} ({module.__file__})" if not is_file else location
            default = "" if attribute else " (the name taken when the target has no colon)"
            raise SystemExit(
                f"tidings: {where} has no attribute {attribute or 'app'!r}{default}: "
                f"give the app's name after a colon, as {location}:NAME"
            ) from None
    return as_server(obj, target)


def _import_file(location: str) -> ModuleType:
    path = Path(location).resolve()
    if not path.is_file():
        raise SystemExit(
            f"tidings: no such file: {location} (looked for {path}): give the path of the file that "
            "defines the app, from the current folder, or a module name (module:NAME)"
        )
    sys.path.insert(0, str(path.parent))  # its own imports of modules beside it
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _import_module(location: str) -> ModuleType:
    folder = os.getcwd()
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if location == missing or location.startswith(missing + "."):
            raise SystemExit(_no_module(missing, folder)) from None
        if missing == "web" and (location + ".").startswith("tidings.demo."):
            raise SystemExit(DEMO_EXTRA) from None
        raise  # one of the module's own imports: the user's to fix, with the traceback


def _no_module(missing: str, folder: str) -> str:
    package, _, _ = missing.rpartition(".")
    if not package:
        where = f"in {folder} (the current folder) or among the installed packages"
    elif paths := getattr(sys.modules.get(package), "__path__", None):
        where = f"in the package {package} ({', '.join(paths)})"
    else:
        where = f"({package} is a module, not a package)"
    return (
        f"tidings: no module named {missing!r} {where}: check the name, run tidings from the folder "
        "that holds the module, or give its file (tidings run path/to/file.py:NAME)"
    )


def as_server(app: Any, target: str) -> Server:
    """``app`` (what ``target`` names) itself if it is a Server, else a default Server hosting it.

    A web.py ``web.application`` is served through its ``wsgifunc()``. Anything else, and a callable
    whose parameters fit neither a WSGI nor an ASGI app, is refused with one line (SystemExit).
    """
    if isinstance(app, Server):
        return app
    if _is_webpy_application(app):
        return Server(wsgi_app=app.wsgifunc())
    if is_asgi(app):
        if not _takes(app, 3):
            raise SystemExit(
                f"tidings: {target} is async but is called as {_signature(app)}, not as an ASGI app "
                f"(scope, receive, send): {ACCEPTED}"
            )
        return Server(asgi_app=app)
    if not callable(app):
        raise SystemExit(f"tidings: {target} is not an app but {type(app).__name__} {app!r:.60}: {ACCEPTED}")
    if not _takes(app, 2):
        raise SystemExit(f"tidings: {target} is called as {_signature(app)}, not as an app: {ACCEPTED}")
    return Server(wsgi_app=app)


def is_asgi(app: Any) -> bool:
    """ASGI apps are coroutine functions or objects whose ``__call__`` is one; WSGI apps are not."""
    call = getattr(type(app), "__call__", None)  # noqa: B004 - the method itself is inspected
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


def _is_webpy_application(obj: Any) -> bool:
    # web.py is not imported for this: an object of its class means its module is loaded already.
    webpy = sys.modules.get("web.application")
    return webpy is not None and isinstance(obj, webpy.application)


def _takes(function: Any, count: int) -> bool:
    """Whether ``function`` can be called with ``count`` positional arguments (True if its
    signature cannot be read, as for some builtins: it may be an app)."""
    try:
        signature = inspect.signature(function)
    except ValueError:
        return True
    try:
        signature.bind(*[None] * count)
    except TypeError:
        return False
    return True


def _signature(function: Any) -> str:
    return f"{getattr(function, '__qualname__', type(function).__name__)}{inspect.signature(function)}"


def app_from_environment() -> Server:
    """uvicorn factory used by worker processes: each imports the target itself."""
    return with_broker_flag(load_target(os.environ[TARGET_ENV]))


def with_broker_flag(app: Server) -> Server:
    """``app`` with the broker ``--broker`` named, if it was given (a new broker per process)."""
    url = os.environ.get(BROKER_FLAG_ENV)
    if url:
        app.socketio.hub.use_broker(broker_from(url))
    return app


def check_broker(app: Server) -> None:
    """Exit with one line naming the broker if the app's broker cannot be reached."""
    from tidings.brokers.redis import RedisBroker

    broker = app.socketio.hub.broker
    if not isinstance(broker, RedisBroker):
        return

    async def probe() -> None:
        probe = RedisBroker(broker.url, broker.prefix, broker.connect_timeout)
        probe.options = broker.options  # settings a Redis Cluster refuses are refused here
        try:
            await probe.connect()
        finally:
            await probe.stop()

    try:
        asyncio.run(probe())
    except BrokerError as error:
        raise SystemExit(f"tidings: {error}") from None
