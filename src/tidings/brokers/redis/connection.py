"""The Redis broker's publishing connection: the client, the names under the prefix, and the queue.

Everything a node tells Redis but its (un)subscribes goes through one queue of commands, sent by one
writer task in the order the calls were made, pipelined: up to ``max_batch`` commands (the setting
``redis_max_batch``) in one write and one round trip. Each command's future gets Redis's answer (for
a PUBLISH, how many nodes took the message) or the :class:`BrokerError` that says why it got none.

While Redis cannot be reached, the queue is a bounded buffer (the settings ``broker_buffer`` and
``broker_buffer_policy``): what is written (publishes, history appends, presence and kept sessions)
waits in it, in order, and goes out when Redis answers again; the callers' futures get
:class:`~tidings.brokers.Buffered` (a count of 0 that says so) at once. Reads fail with
:class:`BrokerError`: their answer is needed now.

With ``redis+sentinel://`` the client is redis-py's Sentinel ``master_for``: each new connection asks
the sentinels where the master is. Every new connection first notes the master's replication id in
``<prefix>master`` (:data:`~tidings.brokers.redis.scripts.NOTE_MASTER`): a history written on another
master (before a failover) starts a new epoch.

With ``redis+cluster://`` the client is redis-py's ``RedisCluster``, which sends each command to the
master of its key's slot (one pipeline per master for a batch), and every topic is a shard channel
(``SPUBLISH``). Names carry their channel, namespace or node as a hash tag (:meth:`RedisConnection.name`),
so that a channel's topic and keys live in one slot: :mod:`~tidings.brokers.redis.shards`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import urllib.parse
from collections import deque
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tidings.brokers.base import Broker, Buffered
from tidings.brokers.redis.scripts import NOTE_MASTER
from tidings.errors import BrokerError
from tidings.settings import BROKER_BUFFER, BROKER_BUFFER_POLICY, REDIS_MAX_BATCH
from tidings.stats import Histogram

logger = logging.getLogger("tidings.broker")
#: Connections of a Redis client's pool (redis-py's default), used by the reads that do not go
#: through the pipeline (history, presence, recovery); more wait for a free one.
POOL_CONNECTIONS = 100

#: What a failing Redis raises: redis-py's errors, the socket's, and a Redis Cluster client's own
#: (``RedisClusterException``: no node of the cluster could be reached, no master owns a slot).
FAILURES = (RedisError, OSError, RedisClusterException)

Command = tuple[Any, ...]
#: A queued command, the future of its answer, and whether it waits through an outage (a write).
Queued = tuple[Command, asyncio.Future[Any], bool]

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
CLUSTER_SCHEME = "redis+cluster://"
CLUSTER_PORT = 6379

#: A client of a Redis server (or of the master Sentinel names), or of a Redis Cluster.
Client = aioredis.Redis | RedisCluster


class RedisConnection:
    """One broker's publishing connection pool to Redis and the queue of commands it sends."""

    def __init__(self, broker: Broker, url: str, prefix: str, connect_timeout: float) -> None:
        #: The broker this connection serves: one with a hub logs lost messages, a publisher's
        #: callers get the error instead.
        self.broker = broker
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        #: Commands sent to Redis in one pipeline (one write, one round trip): ``redis_max_batch``.
        self.max_batch = REDIS_MAX_BATCH
        #: Writes that wait while Redis cannot be reached, and what a new one does when that many
        #: wait: ``broker_buffer`` and ``broker_buffer_policy``.
        self.buffer = BROKER_BUFFER
        self.buffer_policy = BROKER_BUFFER_POLICY
        #: Whether Redis is a Redis Cluster (``redis+cluster://``): topics are shard channels, names
        #: carry hash tags.
        self.cluster = url.startswith(CLUSTER_SCHEME)
        #: The command that publishes to a topic: ``PUBLISH``, or ``SPUBLISH`` on a Redis Cluster.
        self.publish = "SPUBLISH" if self.cluster else "PUBLISH"
        #: A pub/sub topic: ``<prefix><kind>:<name>``; on a Redis Cluster ``<prefix><kind>:{<name>}``.
        self.name = self._tagged_name if self.cluster else self._plain_name
        self.client: Client | None = None
        self._sentinel: Sentinel | None = None
        self._outbox: deque[Queued] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._failing = False
        #: Seconds from sending a pipeline to Redis' answer, one observation per pipeline (the
        #: broker's ``publish_seconds``).
        self.round_trips = Histogram()
        self._buffering = False  # writes wait in the buffer: Redis failed, and was not seen back since
        self._wake: asyncio.Event | None = None  # the writer waits on it before it tries again
        self._in_flight = 0  # commands of the pipeline being sent
        self._lost = 0  # writes the full buffer dropped or refused during this outage

    # -- names -------------------------------------------------------------------------------------

    def _plain_name(self, kind: str, name: str) -> bytes:
        return f"{self.prefix}{kind}:{name}".encode()

    def _tagged_name(self, kind: str, name: str) -> bytes:
        return self.key(kind, name).encode()

    def key(self, kind: str, name: str | None = None) -> str:
        """A key: ``<prefix><kind>``, or ``<prefix><kind>:<name>``; on a Redis Cluster the name is a
        hash tag, ``<prefix><kind>:{<name>}``, so that the keys and topic of one channel (namespace,
        node) are in one slot (a name with a ``}``, which would end the tag early, is tagged by its
        digest: ``<prefix><kind>:{#<digest>}<name>``)."""
        if name is None:
            return f"{self.prefix}{kind}"
        if not self.cluster:
            return f"{self.prefix}{kind}:{name}"
        if "}" not in name:
            return f"{self.prefix}{kind}:{{{name}}}"
        digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        return f"{self.prefix}{kind}:{{#{digest}}}{name}"

    def failure(self, error: BaseException | str) -> BrokerError:
        """The error that says Redis failed, naming it (its password hidden)."""
        return BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {describe(error)}")

    def not_connected(self) -> BrokerError:
        return BrokerError(f"the Redis broker at {safe_url(self.url)} is not connected")

    # -- open and close ------------------------------------------------------------------------------

    async def open(self) -> Client:
        """The client, connected and answering (once; :class:`BrokerError` if Redis cannot be reached)."""
        if self.client is None:
            client = self.new_client()
            try:
                await client.ping()
            except FAILURES as error:
                await self._close(client)
                where = safe_url(self.url)
                raise BrokerError(f"cannot reach the Redis broker at {where}: {describe(error)}") from None
            self.client = client
        return self.client

    def new_client(self, name: str | None = None) -> Client:
        """A client of its own (not connected yet) of the URL, of the master the sentinels name for
        ``redis+sentinel://``, or of the cluster for ``redis+cluster://``; ``name``: its connections'
        ``CLIENT SETNAME``."""
        timeout = self.connect_timeout
        if self.cluster:
            seeds, username, password = parse_cluster_url(self.url)
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in seeds],
                username=username,
                password=password,
                client_name=name,
                max_connections=POOL_CONNECTIONS,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
        if not self.url.startswith(SENTINEL_SCHEME):
            # Reads past the pool's connections (thousands of clients recovering their history at
            # once) wait for one, instead of failing with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=POOL_CONNECTIONS,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                client_name=name,
                redis_connect_func=self._note_master,
            )
            return aioredis.Redis.from_pool(pool)
        sentinels, service, db, username, password = parse_sentinel_url(self.url)
        timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        if self._sentinel is None:  # one for the clients of this connection (publisher, subscriber)
            self._sentinel = Sentinel(sentinels, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
        client: aioredis.Redis = self._sentinel.master_for(
            service,
            db=db,
            username=username,
            password=password,
            client_name=name,
            redis_connect_func=self._note_master,
        )
        return client

    def node_client(self, node: ClusterNode, name: str) -> aioredis.Redis:
        """A client of one master of the cluster, with the URL's user and password: for the
        subscriber connection to its shard channels. It does not reconnect by itself: redis-py's
        PubSub would subscribe every shard channel again in one SSUBSCRIBE, which a master with
        several slots refuses (CROSSSLOT); :mod:`~tidings.brokers.redis.shards` does it, slot by slot."""
        _, username, password = parse_cluster_url(self.url)
        timeout = self.connect_timeout
        return aioredis.Redis(
            host=node.host,
            port=int(node.port),
            username=username,
            password=password,
            client_name=name,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    async def _note_master(self, connection: AbstractConnection) -> None:
        """A new connection: set it up as redis-py does, then note the master's replication id."""
        await connection.on_connect()
        await connection.send_command("EVAL", NOTE_MASTER, 1, self.key("master"))
        await connection.read_response()

    async def _close(self, client: Client) -> None:
        sentinel, self._sentinel = self._sentinel, None
        await client.aclose()
        if sentinel is not None:
            await sentinel.aclose()

    async def drain(self) -> None:
        """Wait (up to ``connect_timeout``) for what is queued to be sent."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # Redis is gone or slow: what is left is lost
                await asyncio.wait_for(asyncio.shield(self._writer), self.connect_timeout)

    async def stop_writer(self) -> None:
        """Stop sending, and fail what is still queued."""
        writer, self._writer = self._writer, None
        await cancel(writer)
        if self._failing and self._outbox:
            logger.warning("broker: stopped with %d write(s) waiting for Redis: lost", len(self._outbox))
        failure = BrokerError("the broker stopped")
        while self._outbox:
            fail(self._outbox.popleft()[1], failure)

    async def close(self) -> None:
        """Close the client (after :meth:`stop_writer`)."""
        client, self.client = self.client, None
        if client is not None:
            await self._close(client)

    # -- the queue -----------------------------------------------------------------------------------

    def queue(self, command: Command, write: bool = True) -> asyncio.Future[Any]:
        """Queue one command (PUBLISH: the future gets the number of nodes that took it).

        A ``write`` waits in the buffer while Redis cannot be reached (its future gets
        :class:`Buffered`); a read (``write=False``) fails then with :class:`BrokerError`.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.client is None:
            fail(future, self.not_connected())
            return future
        if self._buffering:
            if not write or not self._make_room():
                fail(future, self._unreachable() if not write else self._full())
                return future
            future.set_result(Buffered())
        self._outbox.append((command, future, write))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="tidings-redis-writer")
        return future

    def reachable(self) -> None:
        """Redis answers again (the subscriber connection is back): writes no longer wait for the
        room the buffer has, and the writer tries again now."""
        self._buffering = False
        if self._wake is not None:
            self._wake.set()

    def _make_room(self) -> bool:
        """Whether a write can wait in the buffer (the pipeline in flight counts too): when it is
        full, the oldest waiting is dropped for it (``drop-oldest``), or it is refused (``raise``)."""
        if len(self._outbox) + self._in_flight < self.buffer:
            return True
        dropping = self.buffer_policy == "drop-oldest"
        if not self._lost:
            what = "dropping the oldest" if dropping else "refusing more"
            logger.warning(
                "broker: the buffer of %d write(s) for Redis at %s is full: %s",
                self.buffer,
                safe_url(self.url),
                what,
            )
        self._lost += 1
        if not dropping:
            return False
        if self._outbox:  # else the pipeline in flight is cut to size if it fails (_keep)
            self._outbox.popleft()  # its caller was told it waits (Buffered)
        return True

    def _unreachable(self) -> BrokerError:
        return BrokerError(f"the Redis broker at {safe_url(self.url)} cannot be reached")

    def _full(self) -> BrokerError:
        return BrokerError(
            f"the Redis broker at {safe_url(self.url)} cannot be reached and {self.buffer} write(s) "
            "wait for it already (broker_buffer)"
        )

    async def _write(self) -> None:
        """PUBLISH what is queued, in order, up to :attr:`max_batch` per round trip; while Redis
        cannot be reached, keep the writes (up to :attr:`buffer`) and try again."""
        outbox = self._outbox
        max_batch = self.max_batch
        clock = asyncio.get_running_loop().time
        delay = 0.05
        wake = self._wake = asyncio.Event()
        try:
            while outbox and self.client is not None:
                batch = [outbox.popleft() for _ in range(min(len(outbox), max_batch))]
                self._in_flight = len(batch)
                sent = clock()
                if self.cluster:
                    kept = await self._write_by_master(self.client, batch)  # type: ignore[arg-type]
                    self._in_flight = 0
                    if kept:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(wake.wait(), delay)
                        delay = min(delay * 2, 2.0)
                        continue
                    self.round_trips.observe(clock() - sent)
                    delay = 0.05
                    if self._failing:
                        self._back()
                    continue
                pipeline = self.client.pipeline(transaction=False)
                for command, _, _ in batch:
                    pipeline.execute_command(*command)
                try:
                    try:
                        results = await pipeline.execute(raise_on_error=False)
                    except RedisConnectionError:
                        if self._failing:
                            raise
                        # A pooled connection Redis closed while it restarted, found out only now:
                        # nothing of the batch reached it. Once more, on a new connection.
                        pipeline = self.client.pipeline(transaction=False)
                        for command, _, _ in batch:
                            pipeline.execute_command(*command)
                        results = await pipeline.execute(raise_on_error=False)
                # Not only RedisError and OSError: on a connection that broke under the call (Redis
                # restarted) uvloop raises RuntimeError, redis-py AttributeError. The writer must
                # not die of it: its callers would wait for ever.
                except Exception as error:
                    self._in_flight = 0
                    if self._keep(batch, error):
                        wake.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(wake.wait(), delay)
                        delay = min(delay * 2, 2.0)
                    continue
                self.round_trips.observe(clock() - sent)
                self._in_flight, delay = 0, 0.05
                if self._failing:
                    self._back()
                self._settle(zip(batch, results, strict=True))
        finally:
            self._writer = self._wake = None

    async def _write_by_master(self, client: RedisCluster, batch: list[Queued]) -> bool:
        """On a Redis Cluster: ``batch`` as one pipeline per master (of its commands' keys, as the
        map of slots says), so that those of a master lost meanwhile (a failover) fail alone and are
        kept, in front of the buffer, while the others are answered (not sent twice when the lost
        ones are sent again). Whether any were kept (the writer waits, then tries again)."""
        by_master: dict[str, list[Queued]] = {}
        for queued in batch:
            command = queued[0]
            key = command[3] if command[0] == "EVAL" else command[1]  # every command queued names a key
            try:
                master = client.get_node_from_key(key)
            except FAILURES:  # no master owns its slot now: its own pipeline, which redis-py routes
                master = None
            by_master.setdefault(master.name if master is not None else "", []).append(queued)
        kept = False
        # One after the other: redis-py's retries of a failing pipeline close every connection of
        # the client, and would cut the others' answers short (their commands then sent twice).
        for group in by_master.values():
            pipeline = client.pipeline(transaction=False)
            for command, _, _ in group:
                pipeline.execute_command(*command)
            try:
                results = await pipeline.execute(raise_on_error=False)
            except FAILURES as error:
                kept = self._keep(group, error) or kept
            else:
                answered: list[tuple[Queued, Any]] = []
                lost: list[tuple[Queued, Any]] = []
                for queued, result in zip(group, results, strict=True):
                    failed = isinstance(result, (RedisConnectionError, RedisTimeoutError))
                    (lost if failed else answered).append((queued, result))
                self._settle(answered)
                if lost:  # read from a master that failed in the middle of its pipeline
                    kept = self._keep([queued for queued, _ in lost], lost[0][1]) or kept
        if kept and self._wake is not None:
            self._wake.clear()
        return kept

    def _settle(self, answered: Iterable[tuple[Queued, Any]]) -> None:
        """Hand each command's future Redis's answer (or the error it refused it with)."""
        for (command, future, _), result in answered:
            if isinstance(result, Exception):
                logger.error("broker: Redis refused %s: %s", command[0], result)
                fail(future, BrokerError(f"Redis refused {command[0]}: {result}"))
            elif not future.done():
                future.set_result(result)

    def _keep(self, batch: list[Queued], error: BaseException) -> bool:
        """Redis failed ``batch``: put its writes back in front of the buffer, tell their callers and
        those of the writes queued behind it that they wait, fail the reads. Whether anything waits
        (without a buffer, ``broker_buffer`` 0, the writes fail as the reads do)."""
        failure = self.failure(error)
        self._buffering = bool(self.buffer)
        if not self._failing:
            self._failing = True
            if self.buffer:
                logger.warning("broker: %s; up to %d write(s) wait for it", failure, self.buffer)
            elif self.broker.hub is not None:  # a publisher's callers get the error instead
                logger.error("broker: %s; %d message(s) lost", failure, len(batch))
        waiting = [*batch, *self._outbox]
        self._outbox.clear()
        for command, future, write in waiting:
            if write and self.buffer:
                self._outbox.append((command, future, write))
                if not future.done():
                    future.set_result(Buffered())
            else:
                fail(future, failure)
        while len(self._outbox) > self.buffer and self.buffer_policy == "drop-oldest":
            self._make_room()
        return bool(self._outbox)

    def _back(self) -> None:
        """Redis answers again: say so, with how many writes the full buffer lost meanwhile."""
        lost, self._lost = self._lost, 0
        self._failing = self._buffering = False
        if lost:
            what = "dropped" if self.buffer_policy == "drop-oldest" else "refused"
            logger.warning(
                "broker: Redis at %s answers again; %d write(s) were %s meanwhile (broker_buffer full)",
                safe_url(self.url),
                lost,
                what,
            )
        elif self.broker.hub is not None:
            logger.warning("broker: publishing to Redis at %s works again", safe_url(self.url))


def fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a fire-and-forget publish must not log "never retrieved"


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait for it to end."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):  # cancelled or failed: we are closing
            await task


def describe(error: BaseException | str) -> str:
    """What went wrong, in one short line: redis-py says no sentinel named a master with the whole
    configuration of each sentinel's client."""
    if isinstance(error, MasterNotFoundError):
        return "no sentinel names a master for the service (they cannot be reached, or fail over)"
    return str(error)


def safe_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: the
    sentinels' addresses (port 26379 unless given), the service (master) name, the database, and
    the master's user and password. ``ValueError`` for a URL that names no sentinel or service."""
    parts = urllib.parse.urlsplit(url)
    sentinels, username, password = _hosts(url, parts, SENTINEL_PORT, "sentinel")
    service, _, db = parts.path.strip("/").partition("/")
    if not service or (db and not db.isdigit()):
        raise ValueError(f"{safe_url(url)}: give the service name and database: .../mymaster/0")
    return sentinels, service, int(db or 0), username, password


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0]``: the addresses of some
    of the cluster's nodes to start from (port 6379 unless given), and the user and password.
    ``ValueError`` for a URL that names no node, or a database but 0 (a cluster has only that one)."""
    parts = urllib.parse.urlsplit(url)
    seeds, username, password = _hosts(url, parts, CLUSTER_PORT, "cluster node")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{safe_url(url)}: a Redis Cluster has only database 0")
    return seeds, username, password


def _hosts(
    url: str, parts: urllib.parse.SplitResult, default_port: int, what: str
) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The ``host[:port]`` list of a URL's netloc, and its user and password."""
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    addresses = []
    for address in hosts.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or "]" in port:  # no port (an IPv6 address has colons of its own, in brackets)
            host, port = address, str(default_port)
        if not host or not port.isdigit():
            raise ValueError(f"{safe_url(url)}: {address!r} is no {what} host[:port]")
        addresses.append((host.strip("[]"), int(port)))
    unquote = urllib.parse.unquote
    return addresses, unquote(user) or None, unquote(password) if at else None
