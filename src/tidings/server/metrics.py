"""Prometheus metrics of a :class:`~tidings.Server`, served at ``Settings.metrics_path``.

Nothing is counted through prometheus-client on the paths that run once per message: the engine, the
hub, the handler runner and the WebSocket protocol keep plain ints (and :class:`~tidings.stats.Histogram`
bucket counts), and a scrape reads them into a snapshot: per family, per label values, a list of
numbers (one for a counter or gauge; the bucket counts and the sum for a histogram).

Under ``tidings run --workers N`` each worker serves its snapshot on a Unix socket in a directory
``tidings run`` makes (:data:`METRICS_DIR_ENV`); the scraped worker asks every other one and adds
them up, so a scrape of any worker reports the totals of all. A worker that stops leaves its
counters there as a file, so that the totals do not go back (a killed one cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tidings.api.request import Headers, route_path
from tidings.protocol.socketio import SocketState
from tidings.server.plain_websocket import State as PlainState
from tidings.server.responses import Receive, Scope, Send, respond
from tidings.server.websocket import bytes_written
from tidings.stats import BUCKETS

if TYPE_CHECKING:
    from tidings.server.app import Server

logger = logging.getLogger("tidings")

#: The directory where the workers of one ``tidings run --workers N`` find each other.
METRICS_DIR_ENV = "TIDINGS_METRICS_DIR"
#: Prometheus' text format.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
#: How long a scrape waits for another worker's snapshot (which measures its broker's lag, up to 2 s).
PEER_TIMEOUT = 5.0
#: Seconds between two measures of the broker's lag (scrapes between them get the last one).
LAG_INTERVAL = 1.0
#: The label value of what is beyond a bound (``metrics_event_names``).
OTHER = "other"

#: Family name (without the ``tidings_`` prefix) -> kind, help, label names.
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "connections": (
        "gauge",
        "Socket.IO sockets connected, by transport and namespace; plain WebSockets by path.",
        ("transport", "namespace"),
    ),
    "sessions_opened": ("counter", "Engine.IO sessions opened, by transport.", ("transport",)),
    "sessions_closed": ("counter", "Engine.IO sessions closed, by reason.", ("reason",)),
    "upgrades": ("counter", "Polling sessions upgraded to WebSocket.", ()),
    "events_received": ("counter", "Socket.IO events received from clients, by name.", ("event",)),
    "deliveries": ("counter", "Messages handed to subscribers by this node's fan-out and sends.", ()),
    "sent_bytes": (
        "counter",
        "Bytes written to clients: WebSocket frames, polling payloads.",
        ("transport",),
    ),
    "broadcasts": ("counter", "Messages fanned out to a channel, namespace or audience on this node.", ()),
    "slow_consumers_cut": ("counter", "Sessions closed because their send buffer was full.", ()),
    "handler_seconds": ("histogram", "How long handlers ran, by handler.", ("handler",)),
    "handler_errors": ("counter", "Handlers that raised, by handler.", ("handler",)),
    "subscriptions": ("gauge", "Channel subscriptions on this node.", ()),
    "channels": ("gauge", "Channels with a subscriber on this node.", ()),
    "handler_queue": ("gauge", "Calls of def handlers waiting for a thread of the pool.", ()),
    "history_recoveries": (
        "counter",
        "Subscribes that asked to recover missed messages, by outcome.",
        ("outcome",),
    ),
    "broker_reconnects": ("counter", "Times the broker reconnected to Redis.", ()),
    "broker_sheds": (
        "counter",
        "Times this node dropped its Redis subscriber connection for its backlog (redis_max_backlog).",
        (),
    ),
    "broker_backlog_bytes": ("gauge", "Bytes Redis held for this node, unread, at the last look.", ()),
    "broker_publish_seconds": ("histogram", "From a publish to Redis' answer, per pipeline.", ()),
    "broker_lag_seconds": (
        "gauge",
        "From a publish to this node reading it back from the broker, measured at the scrape.",
        (),
    ),
}
#: Gauges whose total over the workers is the largest, not the sum.
LARGEST = frozenset({"broker_lag_seconds"})

#: Family -> label values ("\x1f"-joined) -> numbers.
Snapshot = dict[str, dict[str, list[float]]]
_SEPARATOR = "\x1f"


def snapshot(server: Server) -> Snapshot:
    """What ``server`` counted so far, read now."""
    engine, io = server.engine, server.socketio
    hub, runner = io.hub, io.runner
    closed = engine.closed
    ours: Snapshot = {name: {} for name in FAMILIES}
    ours["connections"] = _connections(server)
    ours["sessions_opened"] = {transport: [count] for transport, count in engine.opened.items()}
    ours["sessions_closed"] = {reason: [count] for reason, count in closed.items()}
    ours["upgrades"] = {"": [engine.upgrades]}
    ours["events_received"] = {event: [count] for event, count in io.events.items()}
    ours["deliveries"] = {"": [hub.deliveries]}
    loop = hub.loop
    ours["sent_bytes"] = {
        "websocket": [bytes_written(loop) if loop is not None else 0],
        "polling": [engine.polling_written],
    }
    ours["broadcasts"] = {"": [hub.broadcasts]}
    ours["slow_consumers_cut"] = {"": [closed.get("send buffer full", 0)]}
    ours["handler_seconds"] = {name: histogram.values() for name, histogram in runner.durations.items()}
    ours["handler_errors"] = {name: [count] for name, count in runner.errors.items()}
    ours["subscriptions"] = {"": [sum(len(members) for members in hub.channels.values())]}
    ours["channels"] = {"": [len(hub.channels)]}
    ours["handler_queue"] = {"": [runner.queued()]}
    ours["history_recoveries"] = {outcome: [count] for outcome, count in io.channels.recoveries.items()}
    broker = hub.broker
    ours["broker_reconnects"] = {"": [broker.reconnects]}
    ours["broker_sheds"] = {"": [broker.sheds]}
    ours["broker_backlog_bytes"] = {"": [broker.backlog]}
    if broker.publish_seconds is not None:
        ours["broker_publish_seconds"] = {"": broker.publish_seconds.values()}
    return ours


def _connections(server: Server) -> dict[str, list[float]]:
    """Connected sockets by transport and namespace, and plain WebSocket connections (transport
    "plain") by path; past ``metrics_event_names`` namespaces and paths (a server open to any
    namespace, or a WSGI app taking WebSockets on any path, lets clients make them up), "other"."""
    limit = server.settings.metrics_event_names
    counts: dict[str, list[float]] = {}

    def count(transport: str, where: str) -> None:
        key = f"{transport}{_SEPARATOR}{where}"
        if key not in counts and len(counts) >= limit:
            key = f"{transport}{_SEPARATOR}{OTHER}"
        counts.setdefault(key, [0])[0] += 1

    for session in server.engine.sessions.values():
        connection = session.data
        if connection is None:
            continue
        for namespace, socket in connection.protocol.sockets.items():
            if socket._state is SocketState.CONNECTED:
                count(session.transport, namespace)
    for plain in server.endpoints.open:
        if plain.state is PlainState.OPEN:
            count("plain", route_path(plain.request.scope))
    return counts


def merge(snapshots: list[Snapshot]) -> Snapshot:
    """The snapshots added up, number by number."""
    total: Snapshot = {name: {} for name in FAMILIES}
    for one in snapshots:
        for name, series in one.items():
            if name not in total:
                continue
            into, add = total[name], max if name in LARGEST else operator.add
            for labels, values in series.items():
                current = into.get(labels)
                into[labels] = list(values) if current is None else list(map(add, current, values))
    return total


def exposition(totals: Snapshot) -> bytes:
    """``totals`` in Prometheus' text format, written by prometheus-client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(totals))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, totals: Snapshot) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_text, label_names) in FAMILIES.items():
            series = self.totals.get(name, {})
            full = "tidings_" + name
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(full, help_text, labels=label_names)
            elif kind == "gauge":
                family = GaugeMetricFamily(full, help_text, labels=label_names)
            else:
                family = HistogramMetricFamily(full, help_text, labels=label_names)
            for labels, values in sorted(series.items()):
                label_values = labels.split(_SEPARATOR) if label_names else []
                if kind == "histogram":
                    family.add_metric(label_values, _cumulative(values[:-1]), values[-1])
                else:
                    family.add_metric(label_values, values[0])
            yield family


def _cumulative(counts: list[float]) -> list[tuple[str, float]]:
    running, buckets = 0.0, []
    for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets


class Metrics:
    """Serves ``server``'s metrics; with :data:`METRICS_DIR_ENV` set, those of every worker."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.directory: Path | None = None
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._peers: asyncio.AbstractServer | None = None
        # The broker's lag, when it was last measured, and the measure.
        self._lag_at = -LAG_INTERVAL
        self._lag: float | None = None

    async def start(self) -> None:
        """Answer the other workers' scrapes, if there are workers (at lifespan startup)."""
        directory = os.environ.get(METRICS_DIR_ENV)
        if not directory or self._peers is not None:
            return
        self.directory = Path(directory)
        self._peers = await asyncio.start_unix_server(self._answer, path=self._socket_path())

    async def stop(self) -> None:
        """Stop answering; leave this worker's counters for the others to add (lifespan shutdown)."""
        if self._peers is None or self.directory is None:
            return
        self._peers.close()
        with contextlib.suppress(OSError):
            os.unlink(self._socket_path())
        self._peers = None
        kept = {
            name: series for name, series in snapshot(self.server).items() if FAMILIES[name][0] != "gauge"
        }
        ended = self.directory / f"{self._name}.json"
        partial = ended.with_suffix(".part")
        partial.write_bytes(orjson.dumps(kept))
        partial.replace(ended)  # whole or absent, for a scrape that reads it meanwhile

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a scrape: 403 to a browser page of an origin the CORS settings refuse."""
        origins = self.server.engine.origins
        allowed, origin = origins.allows(scope, Headers(scope.get("headers", [])))
        if not allowed:
            await respond(send, 403, b"Forbidden: origin not allowed\n")
            return
        snapshots = [await self.measure()]
        if self.directory is not None:
            snapshots += await self._others()
        await respond(send, 200, exposition(merge(snapshots)), CONTENT_TYPE, origins.headers(origin))

    async def measure(self) -> Snapshot:
        """:func:`snapshot`, with the broker's lag: a probe's round trip through Redis, measured at
        most once every :data:`LAG_INTERVAL` (the scrapes meanwhile get the last one), so that a
        client scraping in a loop cannot make the node publish in a loop."""
        ours = snapshot(self.server)
        now = time.monotonic()
        if now - self._lag_at >= LAG_INTERVAL:
            self._lag_at = now
            self._lag = await self.server.socketio.hub.broker.lag()
        if self._lag is not None:
            ours["broker_lag_seconds"] = {"": [self._lag]}
        return ours

    def _socket_path(self) -> str:
        assert self.directory is not None
        return str(self.directory / f"{self._name}.sock")

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(orjson.dumps(await self.measure()))
            await writer.drain()
        finally:
            writer.close()

    async def _others(self) -> list[Snapshot]:
        """The snapshots of the other workers that run, and the counters of those that stopped."""
        assert self.directory is not None
        own = self._socket_path()
        sockets = [str(path) for path in self.directory.glob("*.sock") if str(path) != own]
        found = await asyncio.gather(*(_ask(path) for path in sockets))
        ended = []
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                ended.append(orjson.loads(path.read_bytes()))
        return [one for one in found if one is not None] + ended


async def _ask(path: str) -> Snapshot | None:
    """The snapshot of the worker listening at ``path``; None if it does not answer (it stopped)."""
    try:
        answer: Snapshot = orjson.loads(await asyncio.wait_for(_read(path), PEER_TIMEOUT))
        return answer
    except (OSError, asyncio.TimeoutError, orjson.JSONDecodeError) as error:
        logger.warning("metrics: worker at %s did not answer: %r", path, error)
        return None


async def _read(path: str) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        return await reader.read()
    finally:
        writer.close()
