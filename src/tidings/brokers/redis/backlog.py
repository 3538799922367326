"""The Redis broker's subscriber backlog: how much Redis holds for this node that it has not read yet.

Redis queues what it publishes to a subscriber in that connection's output buffer until the
subscriber reads it; past ``client-output-buffer-limit pubsub`` (32 MB at once, or 8 MB for 60 s, by
default) it closes the connection, and the node takes up its subscriptions again without what was
queued. A node falls that far behind when its event loop is stuck or too busy to read, so the loop
cannot be the one to watch: a thread of the broker's own asks Redis, every ``redis_backlog_interval``
seconds, for its subscriber connection's ``omem`` (``CLIENT LIST TYPE pubsub``, the connection found
by its name), and past ``redis_max_backlog`` bytes closes the connection itself (``CLIENT KILL``): the
backlog is dropped sooner, and counted. Either way, once the node reads again it finds the
connection gone, subscribes again, catches its history channels up and tells the members of its
other channels that they may have missed messages (the ``lagging`` event:
:mod:`~tidings.brokers.redis.broker`). On a Redis Cluster a node has a subscriber connection on each
master it has topics on, all with that name: each is watched, and shed, apart; the backlog is their sum.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.cluster import ClusterNode
from redis.sentinel import Sentinel

from tidings.brokers.redis.connection import (
    CLUSTER_SCHEME,
    FAILURES,
    SENTINEL_SCHEME,
    parse_cluster_url,
    parse_sentinel_url,
    safe_url,
)

logger = logging.getLogger("tidings.broker")


class BacklogWatch:
    """Watches one subscriber connection's backlog in Redis, from a thread, and sheds it past a limit."""

    def __init__(self, url: str, name: str, limit: int, interval: float, connect_timeout: float) -> None:
        self.url = url
        #: The subscriber connection's ``CLIENT SETNAME``.
        self.name = name
        self.limit = limit
        self.interval = interval
        self.connect_timeout = connect_timeout
        #: Bytes Redis held for the connection at the last look (its ``omem``).
        self.backlog = 0
        #: How many times the backlog passed the limit and the connection was closed for it.
        self.sheds = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="tidings-redis-backlog", daemon=True)
        self._thread.start()

    def stop(self) -> threading.Thread | None:
        """Stop looking; the thread, to join (it ends within one Redis round trip)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        return thread

    def _client(self) -> redis.Redis | redis.RedisCluster:
        """A blocking client of the URL, of the master the sentinels name (``redis+sentinel://``),
        or of the cluster (``redis+cluster://``): the servers that hold the subscriber connections."""
        timeouts = {"socket_connect_timeout": self.connect_timeout, "socket_timeout": self.connect_timeout}
        if self.url.startswith(CLUSTER_SCHEME):
            seeds, username, password = parse_cluster_url(self.url)
            nodes = [ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
            timeout = self.connect_timeout
            return redis.RedisCluster(
                startup_nodes=nodes,
                username=username,
                password=password,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
        if not self.url.startswith(SENTINEL_SCHEME):
            return redis.Redis.from_url(self.url, **timeouts)
        sentinels, service, db, username, password = parse_sentinel_url(self.url)
        sentinel = Sentinel(sentinels, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            service, db=db, username=username, password=password
        )
        return client

    def _watch(self) -> None:
        client = None
        try:
            while not self._stopping.wait(self.interval):
                try:
                    client = client or self._client()
                    self._look(client)
                except (*FAILURES, ValueError) as error:
                    logger.debug("broker: cannot read the subscriber backlog: %s", error)
                    if isinstance(client, redis.RedisCluster):  # a master may have changed
                        client.close()
                        client = None
        finally:
            if client is not None:
                client.close()

    def _look(self, client: redis.Redis | redis.RedisCluster) -> None:
        """Read the backlog of each subscriber connection (one, or one per master of a cluster),
        and shed one past the limit."""
        if isinstance(client, redis.RedisCluster):
            servers = [node.redis_connection for node in client.get_primaries()]  # type: ignore[no-untyped-call]
        else:
            servers = [client]
        backlog = 0
        for server in servers:
            if server is not None:
                backlog += self._shed(server)
        self.backlog = backlog

    def _shed(self, server: redis.Redis) -> int:
        """The backlog of the subscriber connection on ``server``, closed past the limit."""
        for connection in server.client_list(_type="pubsub"):
            if connection.get("name") != self.name:
                continue
            backlog = int(connection["omem"])
            if backlog > self.limit:
                server.client_kill_filter(_id=connection["id"])
                self.sheds += 1
                logger.warning(
                    "broker: this node is %d bytes behind on Redis at %s (redis_max_backlog: %d); "
                    "dropped its subscriber connection: history channels catch up, the members of "
                    "the others get 'lagging'",
                    backlog,
                    safe_url(self.url),
                    self.limit,
                )
            return backlog
        return 0
