"""The Redis broker: several server processes and machines (nodes) share channels through Redis pub/sub.

Routing, under a name prefix (default ``tidings:``):

- ``<prefix>channel:<name>``: a channel's messages. A node SUBSCRIBEs when its first local member
  joins the channel and UNSUBSCRIBEs when the last one leaves, so it takes only the traffic of the
  channels its sockets are in.
- ``<prefix>group:<name>``: a Socket.IO namespace (or WebSocket endpoint path), for ``broadcast``.
- ``<prefix>node:<node id>``: one node's sends. A session id is ``<node id>.<random>``, so
  ``send(session_id, ...)`` is one PUBLISH to the node that holds the session.

Every message goes through Redis, the publishing node's own subscribers included: each node reads one
subscriber connection, on which Redis hands it messages in the order it executed the PUBLISHes, so
every receiver sees the same order; one node publishes in the order its calls were made (one writer
task, pipelined). PUBLISH answers how many subscriber connections took the message: with one per node,
that is how many nodes had someone to hand it to.

What travels is an envelope (:mod:`tidings.brokers.envelope`), built once per message in the
publisher's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import urllib.parse
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tidings.brokers import PREFIX_ENV, envelope
from tidings.brokers.base import Broker, BrokerError, Kind
from tidings.brokers.envelope import EnvelopeError, open_envelope, seal

if TYPE_CHECKING:
    from tidings.hub import Outgoing, Subscriber

logger = logging.getLogger("tidings.broker")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "tidings:"
#: PUBLISH commands sent to Redis in one pipeline (one write, one round trip).
MAX_BATCH = 512
#: Seconds to wait for Redis to confirm subscriptions before a subscribe is answered anyway.
READY_TIMEOUT = 5.0

Route = tuple[Literal["channel", "group", "node"], str]


class RedisBroker(Broker):
    """Share channels, namespaces and sends between nodes through Redis pub/sub (redis-py asyncio).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or ``unix://``.
        prefix: prefix of every Redis name tidings uses; nodes with the same URL and prefix share
            channels. Defaults to the environment variable ``TIDINGS_BROKER_PREFIX``, else
            ``"tidings:"``.
        connect_timeout: seconds to wait for Redis when connecting; at start an unreachable Redis
            is an error (:class:`BrokerError`) after that long.
    """

    remote = True

    def __init__(
        self, url: str = DEFAULT_URL, prefix: str | None = None, connect_timeout: float = 5.0
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix if prefix is not None else os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
        self.connect_timeout = connect_timeout
        #: This node's id: the first part of every session id it hands out.
        self.node_id = secrets.token_urlsafe(6)
        self._node_topic = self._name("node", self.node_id)
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None  # redis.asyncio.client.PubSub
        # What each subscribed topic routes to; written when the hub's membership changes.
        self._routes: dict[bytes, Route] = {}
        # SUBSCRIBE (True) / UNSUBSCRIBE (False) requests in the order the hub made them.
        self._control: deque[tuple[bool, bytes]] = deque()
        # Per topic, the subscribes Redis has not confirmed yet (see ready()).
        self._unconfirmed: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._outbox: deque[tuple[bytes, bytes, asyncio.Future[int]]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._controller: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._publish_failing = False

    @property
    def reach(self) -> Hashable:
        return ("redis", self.url, self.prefix)

    def __repr__(self) -> str:
        return f"<RedisBroker {safe_url(self.url)} prefix={self.prefix!r} node={self.node_id}>"

    # -- names -------------------------------------------------------------------------------------

    def _name(self, kind: str, name: str) -> bytes:
        return f"{self.prefix}{kind}:{name}".encode()

    # -- start and stop ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the publishing connection pool and check Redis answers (what a publisher needs)."""
        if self._redis is not None:
            return
        client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=self.connect_timeout, socket_timeout=self.connect_timeout
        )
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            await client.aclose()
            raise BrokerError(f"cannot reach the Redis broker at {safe_url(self.url)}: {error}") from None
        self._redis = client

    async def start(self) -> None:
        """Connect, subscribe this node's topic and the topics of members that joined already."""
        await self.connect()
        assert self._redis is not None
        loop = asyncio.get_running_loop()
        self._routes[self._node_topic] = ("node", self.node_id)
        confirmed = self._expect_confirmation(self._node_topic)
        self._pubsub = self._redis.pubsub()
        try:
            await self._pubsub.subscribe(self._node_topic)
        except (RedisError, OSError) as error:
            await self.stop()
            message = f"cannot subscribe on the Redis broker at {safe_url(self.url)}: {error}"
            raise BrokerError(message) from None
        self._reader = loop.create_task(self._read(), name="tidings-redis-reader")
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), self.connect_timeout)
        except asyncio.TimeoutError:
            await self.stop()
            message = f"the Redis broker at {safe_url(self.url)} did not confirm a subscription"
            raise BrokerError(message) from None
        self._kick_controller()
        logger.info("broker: %r", self)

    async def stop(self) -> None:
        """Send what is queued (briefly), then close the connections."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # Redis is gone or slow: what is left is lost
                await asyncio.wait_for(asyncio.shield(self._writer), self.connect_timeout)
        for task in (self._reader, self._controller, self._writer):
            if task is not None:
                task.cancel()
        for task in (self._reader, self._controller, self._writer):
            if task is not None:
                with contextlib.suppress(BaseException):  # cancelled or failed: we are closing
                    await task
        self._reader = self._controller = self._writer = None
        failure = BrokerError("the broker stopped")
        while self._outbox:
            _fail(self._outbox.popleft()[2], failure)
        for waiting in self._unconfirmed.values():
            for future in waiting:
                future.cancel()
        self._unconfirmed.clear()
        self._control.clear()
        self._routes.clear()
        pubsub, self._pubsub = self._pubsub, None
        client, self._redis = self._redis, None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (RedisError, OSError):
            logger.debug("broker: closing the Redis connections failed", exc_info=True)

    # -- session ids ---------------------------------------------------------------------------------

    def new_session_id(self) -> str:
        return f"{self.node_id}.{secrets.token_urlsafe(15)}"

    # -- membership: what this node subscribes to ---------------------------------------------------

    def first_joined(self, kind: Kind, name: str) -> None:
        topic = self._name(kind, name)
        self._routes[topic] = (kind, name)
        self._expect_confirmation(topic)
        self._control.append((True, topic))
        self._kick_controller()

    def last_left(self, kind: Kind, name: str) -> None:
        topic = self._name(kind, name)
        self._routes.pop(topic, None)  # messages still in flight to it find no one: dropped
        self._control.append((False, topic))
        self._kick_controller()

    async def ready(self) -> None:
        waiting = [future for futures in self._unconfirmed.values() for future in futures]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=READY_TIMEOUT)
            if late:
                logger.warning("broker: %d subscription(s) unconfirmed after %ss", len(late), READY_TIMEOUT)

    def _expect_confirmation(self, topic: bytes) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._unconfirmed.setdefault(topic, deque()).append(future)
        return future

    def _confirmed(self, topic: bytes) -> None:
        waiting = self._unconfirmed.get(topic)
        if waiting:
            future = waiting.popleft()
            if not waiting:
                del self._unconfirmed[topic]
            if not future.done():
                future.set_result(None)

    def _kick_controller(self) -> None:
        if self._controller is None and self._pubsub is not None and self._control:
            self._controller = asyncio.get_running_loop().create_task(self._control_subscriptions())

    async def _control_subscriptions(self) -> None:
        """Send the (un)subscribe requests in order, runs of the same kind as one command."""
        delay = 0.05
        try:
            while self._control:
                subscribe, topic = self._control.popleft()
                topics = [topic]
                while self._control and self._control[0][0] is subscribe:
                    topics.append(self._control.popleft()[1])
                try:
                    if subscribe:
                        await self._pubsub.subscribe(*topics)
                    else:
                        await self._pubsub.unsubscribe(*topics)
                except (RedisError, OSError) as error:
                    # Not sent: put them back first, in order, and try again when Redis is back.
                    logger.warning("broker: (un)subscribe failed (%s); retrying", error)
                    self._control.extendleft((subscribe, t) for t in reversed(topics))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                else:
                    delay = 0.05
        finally:
            self._controller = None

    # -- receiving -----------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Take messages off the subscriber connection and hand them to the hub, in order."""
        pubsub = self._pubsub
        lost = False
        delay = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except Exception as error:  # RedisError, OSError; anything else is logged with its traceback
                if not lost:
                    known = isinstance(error, (RedisError, OSError))
                    logger.warning(
                        "broker: lost Redis at %s (%s); reconnecting",
                        safe_url(self.url),
                        error,
                        exc_info=not known,
                    )
                    lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if lost:
                # redis-py subscribed the connection to every topic again when it reconnected.
                logger.warning(
                    "broker: reconnected to Redis at %s; messages published meanwhile are lost",
                    safe_url(self.url),
                )
                lost, delay = False, 0.05
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._receive(message["channel"], message["data"])
            elif kind == "subscribe":
                self._confirmed(message["channel"])

    def _receive(self, topic: bytes, data: bytes) -> None:
        route = self._routes.get(topic)
        hub = self.hub
        if route is None or hub is None:
            return
        try:
            session_id, outgoing = open_envelope(data)
        except EnvelopeError as error:
            logger.error("broker: dropped a message on %r: %s", topic, error)
            return
        kind, name = route
        try:
            if kind == "node":
                if session_id is not None:
                    hub.send(outgoing, session_id)
                return
            exclude = hub.sessions.get(session_id) if session_id is not None else None
            if kind == "channel":
                if outgoing.channel == name:
                    hub.publish(outgoing, exclude)
            else:
                hub.broadcast(outgoing, name, exclude)
        except Exception:  # a bug below us must not stop the reader
            logger.exception("broker: delivering a message on %r failed", topic)

    # -- publishing ----------------------------------------------------------------------------------

    def prepare(self, outgoing: Outgoing) -> None:
        outgoing.encoded(envelope.FORM, envelope.body)

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> asyncio.Future[int]:
        assert outgoing.channel is not None
        return self._enqueue(self._name("channel", outgoing.channel), outgoing, exclude)

    def broadcast(
        self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None
    ) -> asyncio.Future[int]:
        return self._enqueue(self._name("group", group), outgoing, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int | asyncio.Future[int]:
        node, dot, _ = session_id.partition(".")
        if not dot or not node:
            return 0  # not a session id this broker handed out
        if node == self.node_id and self.hub is not None and session_id not in self.hub.sessions:
            return 0  # ours, and gone
        return self._publish(self._name("node", node), seal(session_id, _body(outgoing)))

    def _enqueue(self, topic: bytes, outgoing: Outgoing, exclude: Subscriber | None) -> asyncio.Future[int]:
        sender = exclude.session_id if exclude is not None else None
        return self._publish(topic, seal(sender, _body(outgoing)))

    def _publish(self, topic: bytes, data: bytes) -> asyncio.Future[int]:
        """Queue one PUBLISH; the future gets the number of nodes that took it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if self._redis is None:
            _fail(future, BrokerError(f"the Redis broker at {safe_url(self.url)} is not connected"))
            return future
        self._outbox.append((topic, data, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="tidings-redis-writer")
        return future

    async def _write(self) -> None:
        """PUBLISH what is queued, in order, up to :data:`MAX_BATCH` per round trip."""
        outbox = self._outbox
        try:
            while outbox and self._redis is not None:
                batch = [outbox.popleft() for _ in range(min(len(outbox), MAX_BATCH))]
                pipeline = self._redis.pipeline(transaction=False)
                for topic, data, _ in batch:
                    pipeline.publish(topic, data)
                try:
                    counts = await pipeline.execute()
                except (RedisError, OSError) as error:
                    failure = BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}")
                    if not self._publish_failing and self.hub is not None:  # a publisher raises instead
                        logger.error("broker: %s; %d message(s) lost", failure, len(batch))
                    self._publish_failing = True
                    for _, _, future in batch:
                        _fail(future, failure)
                    continue
                if self._publish_failing:
                    if self.hub is not None:
                        logger.warning("broker: publishing to Redis at %s works again", safe_url(self.url))
                    self._publish_failing = False
                for (_, _, future), count in zip(batch, counts, strict=True):
                    if not future.done():
                        future.set_result(int(count))
        finally:
            self._writer = None


def _body(outgoing: Outgoing) -> bytes:
    return outgoing.encoded(envelope.FORM, envelope.body)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a fire-and-forget publish must not log "never retrieved"


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
