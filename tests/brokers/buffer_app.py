"""The servers of the outage and failover tests: channels ``hist-*`` keep 1000 messages, and a client
makes its node publish with ``tidings.broadcast_channel``, told what it returned or raised.

``app`` has the default buffer; ``dropping`` and ``refusing`` keep 5 writes while Redis is away,
dropping the oldest or refusing more.
"""

from __future__ import annotations

import tidings

handlers = tidings.Handlers()


@handlers.on("publish")
def publish(request, socket, context, channel, message):
    try:
        return {"reached": tidings.broadcast_channel(message, channel)}
    except (tidings.NoSocket, tidings.BrokerError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


def server(**settings):
    return tidings.Server(handlers=handlers, history=[("^hist-", 1000, 600)], **settings)


app = server()
dropping = server(broker_buffer=5, broker_buffer_policy="drop-oldest")
refusing = server(broker_buffer=5, broker_buffer_policy="raise")
