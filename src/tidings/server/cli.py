"""``tidings run module:attr``: serve a tidings Server, a WSGI app or an ASGI app on uvicorn.

``tidings demo``: serve the chat demo (``tidings.demo``) the same way.

``tidings publish CHANNEL MESSAGE``: publish to a channel of the servers that share a broker, or,
with ``--url``, through a server's HTTP API (where the broker cannot be reached from here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import functools
import importlib.metadata
import importlib.util
import json
import logging
import logging.config
import math
import os
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess
from uvicorn.supervisors.multiprocess import Process

from tidings.api.publisher import Publisher
from tidings.brokers import BROKER_ENV, PREFIX_ENV, BrokerError, broker_from
from tidings.errors import NoSocket
from tidings.protocol import ProtocolError
from tidings.protocol.socketio import MAX_DEPTH, loads
from tidings.server.app import Server
from tidings.server.guard import GuardedHttpToolsProtocol, connection_capacity, raise_open_files_limit
from tidings.server.logs import DEFAULT_FORMAT, FORMATS, LOG_FORMAT_ENV, json_config
from tidings.server.targets import (
    BROKER_FLAG_ENV,
    TARGET_ENV,
    app_from_environment,
    check_broker,
    load_target,
    with_broker_flag,
)
from tidings.settings import API_KEY_ENV, Settings

logger = logging.getLogger("tidings")
#: The WebSocket protocol `tidings run` serves with: "fast" (tidings' own, see server/websocket.py) or
#: "websockets" (uvicorn's stock protocol on the `websockets` package).
WS_ENV = "TIDINGS_WS"
WS_PROTOCOLS = ("fast", "websockets")
DEFAULT_WS = "fast"
HOST_ENV, DEFAULT_HOST = "TIDINGS_HOST", "127.0.0.1"
PORT_ENV, DEFAULT_PORT = "TIDINGS_PORT", 8000
API_URL_ENV = "TIDINGS_API_URL"


class _Uvicorn(uvicorn.Server):
    """uvicorn, stopping gracefully: it stops accepting, then closes the tidings sessions and
    WebSockets (clients reconnect to another worker, or to the restarted server) and waits for their
    handlers (:meth:`Server.drain`), then for the requests still open; it keeps the signal that
    stopped it. A worker process (``app`` None) imports the target itself."""

    stopped_by: int | None = None  # the signal that stopped it

    def __init__(self, config: uvicorn.Config, app: Server | None = None) -> None:
        super().__init__(config)
        self.tidings_app = app

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.tidings_app is None:  # what uvicorn would import for a worker, kept at hand
            self.tidings_app = self.config.app = app_from_environment()
            self.config.factory = False
        await super().serve(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        assert self.tidings_app is not None
        for server in self.servers:  # accept no more: reconnecting clients go to the other workers
            server.close()
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        begun = loop.time()
        logger.info(
            "stopping: %d session(s) told to reconnect, up to %gs for running handlers (shutdown_timeout)",
            len(self.tidings_app.engine.sessions),
            self.tidings_app.settings.shutdown_timeout,
        )
        await self.tidings_app.drain()
        # uvicorn's wait for the requests still open gets what is left of shutdown_timeout
        left = self.tidings_app.settings.shutdown_timeout - (loop.time() - begun)
        self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by = sig
        super().handle_exit(sig, frame)


class _Worker(Process):
    """A worker process of ``tidings run --workers N``: it serves with :class:`_Uvicorn`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _Uvicorn(self.config)
        return self._server


class _Workers(Multiprocess):
    """uvicorn's supervisor of worker processes, which keeps the signal that stopped it. SIGHUP
    restarts the workers one at a time, each replaced once its successor serves (uvicorn's
    ``restart_all``), so that clients always find a worker to reconnect to."""

    stopped_by: int | None = None

    def run(self) -> None:
        # uvicorn makes its workers of the Process class of its module, with no option to choose one.
        multiprocess.Process = _Worker  # type: ignore[misc]
        super().run()

    def handle_int(self) -> None:
        self.stopped_by = signal.SIGINT
        super().handle_int()

    def handle_term(self) -> None:
        self.stopped_by = signal.SIGTERM
        super().handle_term()


def run(
    target: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = False,
    broker: str | None = None,
    broker_prefix: str | None = None,
    ws: str | None = None,
    forwarded_allow_ips: str | None = None,
    announce: Callable[[str], object] | None = None,
    log_format: str = DEFAULT_FORMAT,
) -> None:
    """Serve ``target`` on uvicorn with uvloop and httptools.

    ``broker`` (a URL) replaces the app's own broker, in every worker; ``broker_prefix`` sets the
    Redis name prefix (``TIDINGS_BROKER_PREFIX``). ``ws`` picks the WebSocket protocol: ``"fast"``
    (tidings' own: one frame per broadcast, batched writes) or ``"websockets"`` (uvicorn's stock
    one); default ``TIDINGS_WS``, else ``"fast"``. ``forwarded_allow_ips``: the proxies whose
    ``X-Forwarded-*`` headers are trusted, exempt from ``max_connections_per_address`` (uvicorn's;
    default ``FORWARDED_ALLOW_IPS``, else 127.0.0.1 and ::1). ``announce`` is called with the URL
    once the port is taken, before the app starts. ``log_format="json"``: every log line, in every
    worker, is one JSON object (:mod:`tidings.server.logs`).

    The app's connection limits (``max_connections``, ``header_timeout``, ... in its Settings) hold
    for every connection, through :class:`~tidings.server.guard.GuardedHttpToolsProtocol` and the
    WebSocket protocol. Stopped by SIGINT (Ctrl+C) or SIGTERM, it stops accepting, tells its
    clients to reconnect (their transports close: WebSockets with 1001), waits up to the app's
    ``shutdown_timeout`` for running handlers, and then ends by that signal, as a shell expects of
    a program it stops (status 130 for Ctrl+C). With ``workers`` > 1, SIGHUP restarts the workers
    one at a time, each stopped that way once its successor serves.
    """
    ws = ws or os.environ.get(WS_ENV) or DEFAULT_WS
    if ws not in WS_PROTOCOLS:
        choices = ", ".join(WS_PROTOCOLS)
        raise SystemExit(f"tidings: unknown WebSocket protocol {ws!r} (choose from {choices})")
    if log_format not in FORMATS:
        raise SystemExit(f"tidings: unknown log format {log_format!r} (choose from {', '.join(FORMATS)})")
    log_config = json_config(log_level) if log_format == "json" else uvicorn.config.LOGGING_CONFIG
    if log_format == "json":
        logging.config.dictConfig(log_config)
    os.environ[TARGET_ENV] = target
    if broker_prefix is not None:
        os.environ[PREFIX_ENV] = broker_prefix
    if broker is not None:
        broker_from(broker)  # a bad URL: say so now
        os.environ[BROKER_ENV] = os.environ[BROKER_FLAG_ENV] = broker
    app = with_broker_flag(load_target(target))  # fail early, in the parent, on a bad target
    check_broker(app)  # and on an unreachable broker
    sock = bind(host, port)  # and on a port in use, before anything says it is served
    options: dict[str, Any] = {
        "workers": workers,
        "log_level": log_level,
        "access_log": access_log,
        "log_config": log_config,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        **uvicorn_options(connection_settings(app.settings), ws),
        "timeout_graceful_shutdown": math.ceil(app.settings.shutdown_timeout),
    }
    if forwarded_allow_ips is not None:
        options["forwarded_allow_ips"] = forwarded_allow_ips
    # uvicorn deprecates its "websockets" protocol for "websockets-sansio", which cannot answer a
    # refused upgrade with an HTTP status (the Engine.IO errors need 400 and 403). `--ws websockets`
    # keeps the one that can, and keeps the warning out of the log.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    url = "http://{}:{}".format(f"[{host}]" if ":" in host else host, sock.getsockname()[1])
    logger.info("serving %s on %s (Ctrl+C to quit)", target, url)
    if announce is not None:
        announce(url)
    if workers > 1:
        # Each worker imports the target itself. Without a shared broker (--broker redis://...),
        # workers do not see each other's sockets; long-polling clients need sticky sessions.
        config = uvicorn.Config("tidings.server.targets:app_from_environment", factory=True, **options)
        supervisor = _Workers(config, sockets=[sock])
        with _metrics_directory(app):
            supervisor.run()
        stopped_by = supervisor.stopped_by
    else:
        server = _Uvicorn(uvicorn.Config(app, **options), app)
        # Once shut down, uvicorn raises the signal it stopped on again: asyncio.run makes a SIGINT
        # a KeyboardInterrupt, and its traceback; SIGTERM ends the process there, unless ignored.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        stopped_by = server.stopped_by
    if stopped_by is not None:
        _end_by(stopped_by)


@contextlib.contextmanager
def _metrics_directory(app: Server) -> Iterator[None]:
    """If ``app`` serves metrics: a directory where the workers find each other, so that a scrape of
    any of them adds up all (:mod:`tidings.server.metrics`); removed with what they left there."""
    if app.settings.metrics_path is None:
        yield
        return
    from tidings.server.metrics import METRICS_DIR_ENV

    with tempfile.TemporaryDirectory(prefix="tidings-metrics-") as directory:
        os.environ[METRICS_DIR_ENV] = directory
        try:
            yield
        finally:
            del os.environ[METRICS_DIR_ENV]


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host`` and ``port``, or exit with one line saying why not.

    uvicorn listens on it once the app has started, as on a socket it binds itself: a client or a
    health check that connects sooner is refused, not kept waiting for an app that may fail.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # an IPv6 address, as uvicorn does
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port of a server just stopped
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"tidings: port {port} is in use on {host}, maybe by a server still running: stop it, "
                f"or choose another port with --port or {PORT_ENV}"
            ) from None
        raise SystemExit(f"tidings: cannot listen on {host} port {port}: {error.strerror or error}") from None
    return sock


def _end_by(signum: int) -> None:
    """End this process by the default action of ``signum``: killed by the signal, as a shell expects
    of a program it stops (it reports 128 + the signal, and a script running tidings stops too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def connection_settings(settings: Settings) -> Settings:
    """``settings`` with ``max_connections`` lowered below the open files limit, once that is raised
    to its hard limit (for this process and the workers it starts); the value in force is logged."""
    open_files = raise_open_files_limit()
    capacity = connection_capacity(settings.max_connections, open_files)
    logger.info(
        "at most %d connections per process (max_connections %d, open files limit %s)",
        capacity,
        settings.max_connections,
        open_files or "none",
    )
    return dataclasses.replace(settings, max_connections=capacity)


def uvicorn_options(settings: Settings, ws: str = DEFAULT_WS) -> dict[str, Any]:
    """The uvicorn options that make ``settings`` hold on every connection: the HTTP protocol and
    the WebSocket protocol ``ws`` (one of :data:`WS_PROTOCOLS`) with its limits, and a message size
    limit of ``max_payload``. ``tidings run`` serves with them; so do the tests."""
    return {
        # Classes with the app's limits (partials, so that worker processes can be given them too).
        "http": functools.partial(GuardedHttpToolsProtocol, settings=settings),
        "ws": _ws_protocol(ws, settings),
        # Engine.IO has its own heartbeat and size limit; WebSocket-level pings would double them,
        # and per-message compression would cost one deflate per recipient of every broadcast.
        "ws_ping_interval": None,
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_payload,
    }


def _ws_protocol(name: str, settings: Settings) -> Any:
    if name == "fast":
        from tidings.server.websocket import FastWebSocketProtocol

        return functools.partial(FastWebSocketProtocol, settings=settings)
    return name


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "publish":
        try:
            message = _message_from(args.message)
        except ProtocolError as error:
            print(f"tidings: MESSAGE cannot be sent: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        api_url = args.url or os.environ.get(API_URL_ENV)
        if api_url:
            raise SystemExit(publish_over_http(args.channel, message, api_url, args.key))
        raise SystemExit(publish_message(args.channel, message, args.broker, args.broker_prefix))
    if args.log_format == DEFAULT_FORMAT:
        logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    announce = None
    if args.command == "demo":
        from tidings import demo

        args.target = demo.TARGET

        def announce(url: str) -> None:
            print(f"tidings demo: open {url}/ in two browser tabs and chat", flush=True)

    try:
        run(
            args.target,
            args.host,
            args.port,
            args.workers,
            args.log_level,
            args.access_log,
            args.broker,
            args.broker_prefix,
            args.ws,
            args.forwarded_allow_ips,
            announce,
            args.log_format,
        )
    except ValueError as error:  # a bad broker URL
        raise SystemExit(f"tidings: {error}") from None


def parser() -> argparse.ArgumentParser:
    """The command line of ``tidings``: every option says its default and its environment variable."""
    parser = argparse.ArgumentParser(
        prog="tidings",
        description="Real-time channels for Python web apps: serve an app with its Socket.IO and "
        "WebSocket endpoints, serve the chat demo, or publish to the channels of running servers.",
        epilog="'tidings COMMAND --help' lists the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"tidings {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("run", help="serve an app with its real-time endpoints")
    serve.add_argument(
        "target",
        help="module:NAME or path/to/file.py:NAME (NAME defaults to app): a tidings.Server, a WSGI or "
        "ASGI app, or a web.py web.application",
    )
    _server_arguments(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the port, each with its own sockets; they share channels through "
        "--broker (default 1)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request (default: off)")
    serve.add_argument(
        "--ws",
        choices=WS_PROTOCOLS,
        help=f"WebSocket protocol: fast (tidings' own) or websockets (uvicorn's) (env {WS_ENV}; "
        f"default {DEFAULT_WS})",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="comma-separated addresses or networks of trusted proxies (their X-Forwarded-For is "
        "believed, and they are exempt from max_connections_per_address); '*' trusts all "
        "(env FORWARDED_ALLOW_IPS; default 127.0.0.1,::1)",
    )
    _broker_arguments(
        serve, "the broker workers and nodes share channels through", "the app's own, else memory"
    )
    chat = commands.add_parser("demo", help="serve the chat demo: rooms, nicknames, who is here")
    _server_arguments(chat)
    _broker_arguments(chat, "demos sharing a broker (redis://...) share their rooms", "memory")
    # then as `tidings run`, with the demo as the target (imported only for this command)
    chat.set_defaults(workers=1, access_log=False, ws=None, forwarded_allow_ips=None)
    publish = commands.add_parser("publish", help="publish a message to a channel of the servers")
    publish.add_argument("channel", help="the channel's name")
    publish.add_argument("message", help="a JSON value, or else taken as a string")
    _broker_arguments(publish, "the broker the servers share (redis://...)", "none: give one")
    publish.add_argument(
        "--url",
        help="publish through this HTTP API of a server instead of the broker, e.g. http://host/api "
        f"(env {API_URL_ENV}; default none: through the broker)",
    )
    publish.add_argument("--key", help=f"the HTTP API's key, with --url (env {API_KEY_ENV}; default none)")
    return parser


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=os.environ.get(HOST_ENV, DEFAULT_HOST),
        help=f"address to listen on; 0.0.0.0 for every interface (env {HOST_ENV}; default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get(PORT_ENV, str(DEFAULT_PORT)),
        help=f"port to listen on; 0 for any free one (env {PORT_ENV}; default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="how much to log (default info)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get(LOG_FORMAT_ENV, DEFAULT_FORMAT),
        help=f"text, or json: one JSON object a line on stderr (time, level, logger, message, and "
        f"session_id, namespace, channel, transport where known) (env {LOG_FORMAT_ENV}; "
        f"default {DEFAULT_FORMAT})",
    )


def _broker_arguments(parser: argparse.ArgumentParser, what: str, default: str) -> None:
    parser.add_argument("--broker", metavar="URL", help=f"{what} (env {BROKER_ENV}; default {default})")
    parser.add_argument(
        "--broker-prefix",
        metavar="PREFIX",
        help=f"Redis name prefix (env {PREFIX_ENV}; default tidings:)",
    )


def _port(text: str) -> int:
    """A port number, from --port or TIDINGS_PORT (argparse converts a string default too)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is no port number, 0 to 65535 (--port or {PORT_ENV})")
    return int(text)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("tidings")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def publish_message(channel: str, message: Any, url: str | None, prefix: str | None) -> int:
    """``tidings publish``: 0 when some server took ``message`` (from :func:`_message_from`), else
    1 with one line on stderr; 2 without a broker."""
    url = url or os.environ.get(BROKER_ENV)
    if not url:
        print(f"tidings: no broker: give --broker redis://... or set {BROKER_ENV}", file=sys.stderr)
        return 2
    try:
        with Publisher(url, prefix) as publisher:
            reached = publisher.broadcast_channel(message, channel)
    except (NoSocket, BrokerError, ValueError) as error:
        print(f"tidings: {error}", file=sys.stderr)
        return 1
    print(f"published to {channel!r}: {reached} server process(es) took it")
    return 0


def publish_over_http(channel: str, message: Any, url: str, key: str | None) -> int:
    """``tidings publish --url``: as :func:`publish_message`, through the server API at ``url``."""
    key = key or os.environ.get(API_KEY_ENV)
    if not key:
        print(f"tidings: no API key: give --key or set {API_KEY_ENV}", file=sys.stderr)
        return 2
    body = json.dumps({"channel": channel, "data": message}).encode()
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    request = urllib.request.Request(f"{url.rstrip('/')}/publish", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            reached = json.load(response)["result"]["reached"]
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read())["error"]
        except (ValueError, KeyError, TypeError):
            reason = error.reason
        print(f"tidings: the API at {url} answered {error.code}: {reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as error:
        print(f"tidings: no answer from an API at {url}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 1
    if not reached:
        print(f"tidings: nobody took it: no socket is subscribed to channel {channel!r}", file=sys.stderr)
        return 1
    print(f"published to {channel!r}: {reached} took it")
    return 0


def _message_from(text: str) -> Any:
    """``tidings publish``'s MESSAGE: ``text`` as JSON if Python's parser takes it, else as a string.

    JSON that the wire cannot carry raises :class:`ProtocolError`: what a client may not send
    (:func:`tidings.protocol.socketio.loads`), and the NaN and Infinity that Python's parser takes.
    """

    def refuse(constant: str) -> Any:
        raise ProtocolError(f"{constant} is no JSON value")

    try:
        json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        return text
    return loads(text)
