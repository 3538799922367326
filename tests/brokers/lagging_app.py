"""tests/brokers/app.py with a small subscriber backlog allowed (256 KiB, looked at every 50 ms), and
room for a client to take a node's whole backlog at once."""

from __future__ import annotations

import tidings
from tests.brokers.app import handlers, view

app = tidings.Server(
    wsgi_app=view,
    handlers=handlers,
    history=[("^hist-", 50, 60)],
    presence=["^pres-"],
    redis_max_backlog=256 * 1024,
    redis_backlog_interval=0.05,
    metrics_path="/metrics",
    max_buffer=64 * 1024 * 1024,
)


@handlers.on("counts")
def counts(request, socket, context):
    """How many times this node dropped its subscriber connection for its backlog, and took it up."""
    broker = socket.io.hub.broker
    return [broker.sheds, broker.reconnects]
