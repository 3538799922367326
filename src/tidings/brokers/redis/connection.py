"""The Redis broker's publishing connection: the client, the names under the prefix, and the queue.

Everything a node tells Redis but its (un)subscribes goes through one queue of commands, sent by one
writer task in the order the calls were made, pipelined: up to ``max_batch`` commands (the setting
``redis_max_batch``) in one write and one round trip. Each command's future gets Redis's answer (for
a PUBLISH, how many nodes took the message) or the :class:`BrokerError` that says why it got none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tidings.brokers.base import Broker
from tidings.errors import BrokerError
from tidings.settings import REDIS_MAX_BATCH
from tidings.stats import Histogram

logger = logging.getLogger("tidings.broker")

Command = tuple[Any, ...]


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
        self.client: aioredis.Redis | None = None
        self._outbox: deque[tuple[Command, asyncio.Future[Any]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._failing = False
        #: Seconds from sending a pipeline to Redis' answer, one observation per pipeline (the
        #: broker's ``publish_seconds``).
        self.round_trips = Histogram()

    # -- names -------------------------------------------------------------------------------------

    def name(self, kind: str, name: str) -> bytes:
        """A pub/sub topic: ``<prefix><kind>:<name>``."""
        return f"{self.prefix}{kind}:{name}".encode()

    def key(self, kind: str, name: str | None = None) -> str:
        """A key: ``<prefix><kind>``, or ``<prefix><kind>:<name>``."""
        return f"{self.prefix}{kind}" if name is None else f"{self.prefix}{kind}:{name}"

    def failure(self, error: BaseException | str) -> BrokerError:
        """The error that says Redis failed, naming it (its password hidden)."""
        return BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}")

    def not_connected(self) -> BrokerError:
        return BrokerError(f"the Redis broker at {safe_url(self.url)} is not connected")

    # -- open and close ------------------------------------------------------------------------------

    def new_client(self, name: str | None = None) -> aioredis.Redis:
        """A client of its own (not connected yet); ``name``: its connections' ``CLIENT SETNAME``."""
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
            client_name=name,
        )

    async def open(self) -> aioredis.Redis:
        """The client, connected and answering (once; :class:`BrokerError` if Redis cannot be reached)."""
        if self.client is None:
            client = self.new_client()
            try:
                await client.ping()
            except (RedisError, OSError) as error:
                await client.aclose()
                raise BrokerError(f"cannot reach the Redis broker at {safe_url(self.url)}: {error}") from None
            self.client = client
        return self.client

    async def drain(self) -> None:
        """Wait (up to ``connect_timeout``) for what is queued to be sent."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # Redis is gone or slow: what is left is lost
                await asyncio.wait_for(asyncio.shield(self._writer), self.connect_timeout)

    async def stop_writer(self) -> None:
        """Stop sending, and fail what is still queued."""
        writer, self._writer = self._writer, None
        await cancel(writer)
        failure = BrokerError("the broker stopped")
        while self._outbox:
            fail(self._outbox.popleft()[1], failure)

    async def close(self) -> None:
        """Close the client (after :meth:`stop_writer`)."""
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    # -- the queue -----------------------------------------------------------------------------------

    def queue(self, command: Command) -> asyncio.Future[Any]:
        """Queue one command (PUBLISH: the future gets the number of nodes that took it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.client is None:
            fail(future, self.not_connected())
            return future
        self._outbox.append((command, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="tidings-redis-writer")
        return future

    async def _write(self) -> None:
        """PUBLISH what is queued, in order, up to :attr:`max_batch` per round trip."""
        outbox = self._outbox
        max_batch = self.max_batch
        clock = asyncio.get_running_loop().time
        try:
            while outbox and self.client is not None:
                batch = [outbox.popleft() for _ in range(min(len(outbox), max_batch))]
                pipeline = self.client.pipeline(transaction=False)
                for command, _ in batch:
                    pipeline.execute_command(*command)
                sent = clock()
                try:
                    try:
                        results = await pipeline.execute(raise_on_error=False)
                    except RedisConnectionError:
                        if self._failing:
                            raise
                        # A pooled connection Redis closed while it restarted, found out only now:
                        # nothing of the batch reached it. Once more, on a new connection.
                        pipeline = self.client.pipeline(transaction=False)
                        for command, _ in batch:
                            pipeline.execute_command(*command)
                        results = await pipeline.execute(raise_on_error=False)
                except (RedisError, OSError) as error:
                    failure = self.failure(error)
                    serving = self.broker.hub is not None  # a publisher raises instead
                    if not self._failing and serving:
                        logger.error("broker: %s; %d message(s) lost", failure, len(batch))
                    self._failing = True
                    for _, future in batch:
                        fail(future, failure)
                    continue
                self.round_trips.observe(clock() - sent)
                if self._failing:
                    if self.broker.hub is not None:
                        logger.warning("broker: publishing to Redis at %s works again", safe_url(self.url))
                    self._failing = False
                for (command, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        logger.error("broker: Redis refused %s: %s", command[0], result)
                        fail(future, BrokerError(f"Redis refused {command[0]}: {result}"))
                    elif not future.done():
                        future.set_result(result)
        finally:
            self._writer = None


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


def safe_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
