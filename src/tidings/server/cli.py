"""``tidings run module:attr``: serve a tidings Server, a WSGI app or an ASGI app on uvicorn.

``tidings demo``: serve the chat demo (``tidings.demo``) the same way.

``tidings publish CHANNEL MESSAGE``: publish to a channel of the servers that share a broker.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from typing import Any

import uvicorn

from tidings.api.publisher import Publisher
from tidings.brokers import BROKER_ENV, PREFIX_ENV, BrokerError, broker_from
from tidings.errors import NoSocket
from tidings.protocol import ProtocolError
from tidings.protocol.socketio import MAX_DEPTH, loads
from tidings.server.app import Server
from tidings.server.guard import GuardedHttpToolsProtocol, connection_capacity, raise_open_files_limit
from tidings.server.targets import BROKER_FLAG_ENV, TARGET_ENV, check_broker, load_target, with_broker_flag
from tidings.settings import Settings

logger = logging.getLogger("tidings")
#: The WebSocket protocol `tidings run` serves with: "fast" (tidings' own, see server/websocket.py) or
#: "websockets" (uvicorn's stock protocol on the `websockets` package).
WS_ENV = "TIDINGS_WS"
WS_PROTOCOLS = ("fast", "websockets")
DEFAULT_WS = "fast"


class _Uvicorn(uvicorn.Server):
    """uvicorn, told to close tidings sessions before it waits for open requests.

    A pending long-poll would otherwise hold the shutdown for up to a ping interval.
    """

    def __init__(self, config: uvicorn.Config, app: Server) -> None:
        super().__init__(config)
        self.tidings_app = app

    async def shutdown(self, sockets: Any = None) -> None:
        self.tidings_app.shutdown()
        await super().shutdown(sockets)


def run(
    target: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = False,
    broker: str | None = None,
    broker_prefix: str | None = None,
    ws: str | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve ``target`` on uvicorn with uvloop and httptools.

    ``broker`` (a URL) replaces the app's own broker, in every worker; ``broker_prefix`` sets the
    Redis name prefix (``TIDINGS_BROKER_PREFIX``). ``ws`` picks the WebSocket protocol: ``"fast"``
    (tidings' own: one frame per broadcast, batched writes) or ``"websockets"`` (uvicorn's stock
    one); default ``TIDINGS_WS``, else ``"fast"``. ``forwarded_allow_ips``: the proxies whose
    ``X-Forwarded-*`` headers are trusted, exempt from ``max_connections_per_address`` (uvicorn's;
    default ``FORWARDED_ALLOW_IPS``, else 127.0.0.1 and ::1).

    The app's connection limits (``max_connections``, ``header_timeout``, ... in its Settings) hold
    for every connection, through :class:`~tidings.server.guard.GuardedHttpToolsProtocol` and the
    WebSocket protocol.
    """
    ws = ws or os.environ.get(WS_ENV) or DEFAULT_WS
    if ws not in WS_PROTOCOLS:
        choices = ", ".join(WS_PROTOCOLS)
        raise SystemExit(f"tidings: unknown WebSocket protocol {ws!r} (choose from {choices})")
    os.environ[TARGET_ENV] = target
    if broker_prefix is not None:
        os.environ[PREFIX_ENV] = broker_prefix
    if broker is not None:
        broker_from(broker)  # a bad URL: say so now
        os.environ[BROKER_ENV] = os.environ[BROKER_FLAG_ENV] = broker
    app = with_broker_flag(load_target(target))  # fail early, in the parent, on a bad target
    check_broker(app)  # and on an unreachable broker
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        **uvicorn_options(connection_settings(app.settings), ws),
        "timeout_graceful_shutdown": 5,
    }
    if forwarded_allow_ips is not None:
        options["forwarded_allow_ips"] = forwarded_allow_ips
    # uvicorn deprecates its "websockets" protocol for "websockets-sansio", which cannot answer a
    # refused upgrade with an HTTP status (the Engine.IO errors need 400 and 403). `--ws websockets`
    # keeps the one that can, and keeps the warning out of the log.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    if workers > 1:
        # Each worker imports the target itself. Without a shared broker (--broker redis://...),
        # workers do not see each other's sockets; long-polling clients need sticky sessions.
        uvicorn.run("tidings.server.targets:app_from_environment", factory=True, workers=workers, **options)
        return
    config = uvicorn.Config(app, **options)
    _Uvicorn(config, app).run()


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
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("run", help="serve an app with its real-time endpoints")
    serve.add_argument("target", help="module:attr or path/to/file.py:attr (attr defaults to app)")
    _server_arguments(serve)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.add_argument(
        "--ws",
        choices=WS_PROTOCOLS,
        help=f"WebSocket protocol: fast (tidings' own) or websockets (uvicorn's); env {WS_ENV}, "
        f"default {DEFAULT_WS}",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="comma-separated addresses or networks of trusted proxies (their X-Forwarded-For is "
        "believed, and they are exempt from max_connections_per_address); '*' trusts all; "
        "env FORWARDED_ALLOW_IPS, default 127.0.0.1,::1",
    )
    _broker_arguments(serve, "the broker workers and nodes share channels through (default: the app's own)")
    chat = commands.add_parser("demo", help="serve the chat demo: rooms, nicknames, who is here")
    _server_arguments(chat)
    _broker_arguments(chat, "demos sharing a broker (redis://...) share their rooms")
    # then as `tidings run`, with the demo as the target (imported only for this command)
    chat.set_defaults(workers=1, access_log=False, ws=None, forwarded_allow_ips=None)
    publish = commands.add_parser("publish", help="publish a message to a channel of the servers")
    publish.add_argument("channel")
    publish.add_argument("message", help="a JSON value, or else taken as a string")
    _broker_arguments(publish, "the broker the servers share (redis://...)")
    args = parser.parse_args(argv)
    if args.command == "publish":
        raise SystemExit(publish_message(args.channel, args.message, args.broker, args.broker_prefix))
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:%(name)s: %(message)s")
    if args.command == "demo":
        from tidings import demo

        args.target = demo.TARGET
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
        print(f"tidings demo: open http://{host}:{args.port}/ in two browser tabs and chat", flush=True)
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
        )
    except ValueError as error:  # a bad broker URL
        raise SystemExit(f"tidings: {error}") from None


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("TIDINGS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("TIDINGS_PORT", "8000")))
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def _broker_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--broker", metavar="URL", help=f"{what}; env {BROKER_ENV}")
    parser.add_argument(
        "--broker-prefix", metavar="PREFIX", help=f"Redis name prefix (default tidings:); env {PREFIX_ENV}"
    )


def publish_message(channel: str, text: str, url: str | None, prefix: str | None) -> int:
    """``tidings publish``: 0 when some server took the message, else 1 with one line on stderr.

    MESSAGE is JSON if it parses, else a string; JSON that the wire cannot carry (NaN, Infinity,
    integers beyond 64 bits, nesting too deep) is refused with status 2 before anything is sent.
    """
    try:
        message = _message_from(text)
    except ProtocolError as error:
        print(f"tidings: MESSAGE cannot be sent: {error}", file=sys.stderr)
        return 2
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


def _message_from(text: str) -> Any:
    """``text`` as JSON if Python's parser takes it, else as a string.

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
