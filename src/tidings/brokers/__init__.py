"""Brokers: how the hubs of several server processes and machines (nodes) share channels.

- ``memory`` (the default): one process; messages stay Python objects, counts are sockets.
- ``redis``: any number of processes and machines through Redis pub/sub
  (:class:`~tidings.brokers.redis.RedisBroker`), or a Redis that Sentinel fails over
  (``redis+sentinel://``), or a Redis Cluster with sharded pub/sub (``redis+cluster://``); counts are
  server processes.

``Server(broker=...)`` takes a URL (``"memory"``, ``"redis://127.0.0.1:6379/0"``) or a
:class:`Broker`; without one, the environment variable ``TIDINGS_BROKER`` decides, else ``memory``.
"""

from __future__ import annotations

import os

from tidings.brokers.base import Broker, Buffered, Count, Kind
from tidings.brokers.memory import MemoryBroker
from tidings.errors import BrokerError

#: The environment variable that names the broker when the code does not.
BROKER_ENV = "TIDINGS_BROKER"
#: The environment variable that sets the Redis name prefix when the code does not.
PREFIX_ENV = "TIDINGS_BROKER_PREFIX"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


def broker_from(spec: str | Broker | None = None, prefix: str | None = None) -> Broker:
    """The broker ``spec`` names: a :class:`Broker` as it is, a URL, or None for ``TIDINGS_BROKER``.

    ``prefix`` (Redis only) defaults to ``TIDINGS_BROKER_PREFIX``, else ``"tidings:"``. Raises
    ``ValueError`` for a URL of no known broker.
    """
    if isinstance(spec, Broker):
        return spec
    url = spec if spec is not None else os.environ.get(BROKER_ENV) or "memory"
    if url in ("memory", "memory://"):
        return MemoryBroker()
    if url.startswith(REDIS_SCHEMES):
        from tidings.brokers.redis import RedisBroker  # redis-py is imported only when used

        return RedisBroker(url, prefix)
    raise ValueError(
        f"unknown broker {url!r}: use 'memory' or a redis://, rediss://, unix://, redis+sentinel:// or "
        "redis+cluster:// URL"
    )


__all__ = [
    "BROKER_ENV",
    "PREFIX_ENV",
    "Broker",
    "BrokerError",
    "Buffered",
    "Count",
    "Kind",
    "MemoryBroker",
    "broker_from",
]
