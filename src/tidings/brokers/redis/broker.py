"""The Redis broker: several server processes and machines (nodes) share channels through Redis pub/sub.

Routing, under a name prefix (default ``tidings:``):

- ``<prefix>channel:<name>``: a channel's messages. A node SUBSCRIBEs when its first local member
  joins the channel and UNSUBSCRIBEs when the last one leaves, so it takes only the traffic of the
  channels its sockets are in.
- ``<prefix>group:<name>``: a Socket.IO namespace (or WebSocket endpoint path), for ``broadcast``.
- ``<prefix>node:<node id>``: one node's sends. A session id is ``<node id>.<random>``, so
  ``send(session_id, ...)`` is one PUBLISH to the node that holds the session.
- ``<prefix>all:nodes``: emits to several channels and session ids (``tidings.emit(to=[...])``), which
  every node takes and hands to its members of their audience: one PUBLISH, and each socket gets it
  once, whichever of the targets it belongs to. The HTTP server API's questions to every node go there
  too, their answers to the asking node's topic (:mod:`~tidings.brokers.redis.survey`).

Every message goes through Redis, the publishing node's own subscribers included: each node reads one
subscriber connection (:mod:`~tidings.brokers.redis.subscriptions`), on which Redis hands it messages
in the order it executed the PUBLISHes, so every receiver sees the same order; one node publishes in
the order its calls were made (one writer task, pipelined: :mod:`~tidings.brokers.redis.connection`).
PUBLISH answers how many subscriber connections took the message: with one per node, that is how many
nodes had someone to hand it to.

What travels is an envelope (:mod:`tidings.brokers.envelope`), built once per message in the
publisher's thread. Channels with history: :mod:`~tidings.brokers.redis.history`; with presence:
:mod:`~tidings.brokers.redis.presence`. ``<prefix>options`` holds the servers' history and presence
settings for publishers that serve nothing.

With connection state recovery, kept sessions and the packet log are in Redis too, and every message
is published by a script that logs it: :mod:`~tidings.brokers.redis.sessions`. A recovered socket may
keep a session id of another node: this node then takes that node's sends too, while it serves it.

Keys that only a server's start would write (``options``, this node's ``alive``) are written again
whenever its connection to Redis comes back: a restarted Redis has lost them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal

import orjson

from tidings.brokers import PREFIX_ENV, envelope
from tidings.brokers.base import Broker, Kind, Missed
from tidings.brokers.envelope import EnvelopeError, open_envelope, seal
from tidings.brokers.redis.backlog import BacklogWatch
from tidings.brokers.redis.connection import (
    CLUSTER_SCHEME,
    FAILURES,
    SENTINEL_SCHEME,
    Client,
    RedisConnection,
    cancel,
    describe,
    parse_cluster_url,
    parse_sentinel_url,
    safe_url,
)
from tidings.brokers.redis.history import RedisHistory
from tidings.brokers.redis.presence import RedisPresence
from tidings.brokers.redis.scripts import PUBLISH_LOGGED
from tidings.brokers.redis.sessions import RedisSessions, newer
from tidings.brokers.redis.shards import Shards
from tidings.brokers.redis.subscriptions import Subscriptions
from tidings.brokers.redis.survey import ANSWER, QUESTION, Survey
from tidings.channels import ChannelOptions, HistoryRule, KeptSession, Target, check_session_id, require
from tidings.errors import BrokerError
from tidings.message import Outgoing, Position, Recovery, Subscriber
from tidings.settings import REDIS_BACKLOG_INTERVAL, REDIS_MAX_BACKLOG

if TYPE_CHECKING:
    from tidings.settings import Settings

logger = logging.getLogger("tidings.broker")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "tidings:"

Route = tuple[Literal["channel", "group", "node", "all", "probe"], str]
#: How long :meth:`RedisBroker.lag` waits for its probe to come back.
LAG_TIMEOUT = 2.0


class RedisBroker(Broker):
    """Share channels, namespaces and sends between nodes through Redis pub/sub (redis-py asyncio).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS), ``unix://``, or
            ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: the
            master Redis Sentinel names for ``service``, asked of the sentinels at each connection
            (port 26379 by default; the password is the master's), or
            ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``: a Redis Cluster (7 or
            later), from any of its nodes (port 6379 by default), with sharded pub/sub
            (:mod:`~tidings.brokers.redis.shards`); there, connection state recovery is refused.
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
        if url.startswith(SENTINEL_SCHEME):
            parse_sentinel_url(url)  # a URL that names no sentinel or service: ValueError now
        self.url = url
        self.prefix = prefix if prefix is not None else os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
        if url.startswith(CLUSTER_SCHEME):
            parse_cluster_url(url)
            if "{" in self.prefix or "}" in self.prefix:
                raise ValueError(
                    f"broker prefix {self.prefix!r}: on a Redis Cluster names carry their channel as a "
                    "hash tag in braces; a prefix cannot have braces of its own"
                )
        self.connect_timeout = connect_timeout
        # The publishing connection and its queue, the subscriber connection's (un)subscribes, the
        # channels with history, this node's presence entries.
        self._connection = RedisConnection(self, url, self.prefix, connect_timeout)
        self.publish_seconds = self._connection.round_trips
        self._subscriptions = Subscriptions()
        self._history = RedisHistory(self, self._connection)
        self._presence = RedisPresence(self, self._connection, self.node_id)
        self._sessions = RedisSessions(self._connection)
        # The subscriber connection's client (named, so that its backlog can be found) and its watch.
        self._subscriber: Client | None = None
        name = f"tidings-subscriber-{self.node_id}"
        self._backlog = BacklogWatch(url, name, REDIS_MAX_BACKLOG, REDIS_BACKLOG_INTERVAL, connect_timeout)
        # Recovered sockets with another node's session id: their nodes, and how many each has here.
        self._adopted: dict[str, str] = {}
        self._adopted_nodes: dict[str, int] = {}
        self._queue = self._connection.queue
        self._name = self._connection.name
        self._node_topic = self._connection.name("node", self.node_id)
        self._all_topic = self._connection.name("all", "nodes")
        # Probes of lag(): this node's own topic for them, and those on their way, by token.
        self._probe_topic = self._connection.name("probe", self.node_id)
        self._probes: dict[bytes, asyncio.Future[None]] = {}
        self._publish_command = self._connection.publish  # PUBLISH, or SPUBLISH on a Redis Cluster
        self._survey = Survey(
            self._queue,
            self._publish_command,
            self._all_topic,
            lambda node: self._name("node", node),
            self.node_id,
        )
        # What each subscribed topic routes to; written when the hub's membership changes.
        self._routes: dict[bytes, Route] = {}
        self._reader: asyncio.Task[None] | None = None
        #: How many times the subscriber connection was lost and taken up again (Redis cut it or
        #: restarted, the network failed, the node shed its backlog): a counter, for metrics.
        # A publisher: whether it found the servers' options in Redis (until then it looks again
        # before each publish), and whether it said that it publishes without them.
        self._options_found = False
        self._warned_no_options = False

    def configure(self, settings: Settings) -> None:
        """Take ``redis_max_batch``, ``redis_ready_timeout``, ``redis_max_backlog``,
        ``redis_backlog_interval``, ``broker_buffer`` and ``broker_buffer_policy`` (see
        :class:`tidings.Settings`)."""
        self._connection.max_batch = settings.redis_max_batch
        self._connection.buffer = settings.broker_buffer
        self._connection.buffer_policy = settings.broker_buffer_policy
        self._subscriptions.ready_timeout = settings.redis_ready_timeout
        self._backlog.limit = settings.redis_max_backlog
        self._backlog.interval = settings.redis_backlog_interval

    @property
    def sheds(self) -> int:
        """How many times this node fell ``redis_max_backlog`` bytes behind and dropped its
        subscriber connection (a counter, for metrics)."""
        return self._backlog.sheds

    @property
    def backlog(self) -> int:
        """Bytes Redis held for this node at the last look (a gauge, for metrics)."""
        return self._backlog.backlog

    @property
    def reach(self) -> Hashable:
        return ("redis", self.url, self.prefix)

    def __repr__(self) -> str:
        return f"<RedisBroker {safe_url(self.url)} prefix={self.prefix!r} node={self.node_id}>"

    # -- start and stop ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the publishing connection pool and check Redis answers (what a publisher needs).

        A publisher (a broker without a hub) also reads the servers' history and presence settings,
        here and, for as long as it finds none, each time it is called again. On a Redis Cluster,
        settings with connection state recovery are refused (:class:`BrokerError`).
        """
        if self._connection.cluster and self.options.recovery is not None:
            raise BrokerError(
                "connection state recovery is not available on a Redis Cluster (redis+cluster://): "
                "its packet log is one stream for every channel, which a cluster cannot keep in one "
                "slot; leave connection_state_recovery unset, or use one Redis (or Sentinel)"
            )
        client = await self._connection.open()
        if self.hub is None and not self._options_found:
            with contextlib.suppress(*FAILURES, ValueError, TypeError, AttributeError):
                stored = await client.get(self._connection.key("options"))
                if stored:
                    self.options = ChannelOptions.from_json(orjson.loads(stored))
                    self._options_found = True

    async def start(self) -> None:
        """Connect, subscribe this node's topic and the topics of members that joined already."""
        await self.connect()
        client = self._connection.client
        assert client is not None
        subscriptions = self._subscriptions
        self._routes[self._node_topic] = ("node", self.node_id)
        self._routes[self._all_topic] = ("all", "nodes")
        self._routes[self._probe_topic] = ("probe", self.node_id)
        topics = (self._node_topic, self._all_topic, self._probe_topic)
        confirmed = asyncio.gather(*map(subscriptions.expect_confirmation, topics))
        cluster = self._connection.cluster
        if cluster:
            subscriptions.pubsub = Shards(
                client,  # type: ignore[arg-type]  # a RedisCluster, as the URL says
                lambda node: self._connection.node_client(node, self._backlog.name),
                self._receive,
                subscriptions.confirmed,
                self._lost_master,
                self._reconnected,
            )
        else:
            self._subscriber = self._connection.new_client(self._backlog.name)
            subscriptions.pubsub = self._subscriber.pubsub()
        try:
            await subscriptions.pubsub.subscribe(*topics)
        except FAILURES as error:
            await self.stop()
            message = f"cannot subscribe on the Redis broker at {safe_url(self.url)}: {error}"
            raise BrokerError(message) from None
        if not cluster:  # on a cluster, each master's connection has a reader of its own
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="tidings-redis-reader")
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), self.connect_timeout)
            await client.set(*self._options())
            await self._presence.start()
        except asyncio.TimeoutError:
            await self.stop()
            message = f"the Redis broker at {safe_url(self.url)} did not confirm a subscription"
            raise BrokerError(message) from None
        except FAILURES as error:
            await self.stop()
            raise self._connection.failure(error) from None
        subscriptions.kick()
        self._backlog.start()
        logger.info("broker: %r", self)

    async def stop(self) -> None:
        """Send what is queued (briefly), then close the connections."""
        await self._connection.drain()
        await self._presence.stop()
        watch = self._backlog.stop()
        reader, self._reader = self._reader, None
        await cancel(reader)
        await self._subscriptions.stop()
        await self._connection.stop_writer()
        self._history.clear()
        self._routes.clear()
        self._adopted.clear()
        self._adopted_nodes.clear()
        try:
            await self._subscriptions.close()
            subscriber, self._subscriber = self._subscriber, None
            if subscriber is not None:
                await subscriber.aclose()
            await self._connection.close()
        except FAILURES:
            logger.debug("broker: closing the Redis connections failed", exc_info=True)
        if watch is not None:
            await asyncio.to_thread(watch.join)

    def _options(self) -> tuple[str, bytes]:
        """The key and value that tell publishers the servers' history and presence settings."""
        return self._connection.key("options"), orjson.dumps(self.options.to_json())

    # -- membership: what this node subscribes to ---------------------------------------------------

    def first_joined(self, kind: Kind, name: str) -> None:
        topic = self._name(kind, name)
        self._routes[topic] = (kind, name)
        self._subscriptions.subscribe(topic)

    def last_left(self, kind: Kind, name: str) -> None:
        topic = self._name(kind, name)
        self._routes.pop(topic, None)  # messages still in flight to it find no one: dropped
        if kind == "channel":
            self._history.forget(name)
        self._subscriptions.unsubscribe(topic)

    async def ready(self) -> None:
        await self._subscriptions.ready()

    async def lag(self) -> float | None:
        """Publish a probe to this node's probe topic, in the queue behind what is being published,
        and time it until the reader takes it off the subscriber connection."""
        loop = asyncio.get_running_loop()
        token = secrets.token_bytes(8)
        back = self._probes[token] = loop.create_future()
        sent = loop.time()
        try:
            self._queue((self._publish_command, self._probe_topic, token))
            await asyncio.wait_for(back, LAG_TIMEOUT)
        except asyncio.TimeoutError:
            return None
        finally:
            self._probes.pop(token, None)
        return loop.time() - sent

    # -- receiving -----------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Take messages off the subscriber connection and hand them to the hub, in order."""
        pubsub = self._subscriptions.pubsub
        lost = False
        delay = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except Exception as error:  # RedisError, OSError; anything else is logged with its traceback
                if not lost:
                    known = isinstance(error, FAILURES)
                    logger.warning(
                        "broker: lost Redis at %s (%s); reconnecting",
                        safe_url(self.url),
                        describe(error),
                        exc_info=not known,
                    )
                    lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if lost:
                # redis-py subscribed the connection to every topic again when it reconnected.
                logger.warning(
                    "broker: reconnected to Redis at %s; messages published meanwhile are lost, "
                    "but for channels with history",
                    safe_url(self.url),
                )
                lost, delay = False, 0.05
                self.reconnects += 1
                self._reconnected()
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._receive(message["channel"], message["data"])
            elif kind == "subscribe":
                self._subscriptions.confirmed(message["channel"])

    def _reconnected(self, topics: list[bytes] | None = None) -> None:
        """The subscriber connection is back (Redis restarted, the network came back, a Sentinel
        failover, or the node had fallen too far behind), or, on a Redis Cluster, ``topics`` of a lost
        master are subscribed on its successor: what waits in the buffer goes out now; write the
        options again, say this node is alive and enter its members in presence again, deliver what
        its history channels (of ``topics``) missed, then go on live; the members of its other
        channels are told they may have missed messages (``lagging``)."""
        self._connection.reachable()
        self._queue(("SET", *self._options()))
        self._presence.enter_again()
        routes = self._routes
        affected = list(routes.values()) if topics is None else [routes[t] for t in topics if t in routes]
        channels = [name for kind, name in affected if kind == "channel"]
        self._history.catch_up(channels)
        hub = self.hub
        if hub is not None:
            for channel in channels:
                if self.options.history(channel) is None:
                    hub.publish(Outgoing([channel], channel, "lagging"))
        if topics is not None:
            self.reconnects += 1
            logger.warning(
                "broker: %d topic(s) whose master was lost or gave their slot away are subscribed on "
                "its new master; messages published meanwhile are lost, but for channels with history",
                len(topics),
            )

    def _lost_master(self, error: BaseException) -> None:
        """A master of the Redis Cluster was lost (its topics wait for the new master of their slots)."""
        logger.warning(
            "broker: lost Redis at %s (%s); its topics wait for a new master", safe_url(self.url), error
        )

    def _receive(self, topic: bytes, data: bytes) -> None:
        route = self._routes.get(topic)
        hub = self.hub
        if route is None or hub is None:
            return
        kind, name = route
        if kind == "probe":  # first: a probe's random token may begin with a survey's mark
            probe = self._probes.pop(data, None)
            if probe is not None and not probe.done():
                probe.set_result(None)
            return
        if data[:1] in (QUESTION, ANSWER):
            self._surveyed(kind, data)
            return
        try:
            session_id, outgoing = open_envelope(data)
        except EnvelopeError as error:
            logger.error("broker: dropped a message on %r: %s", topic, error)
            return
        try:
            if kind == "all":
                if outgoing.audience is not None:
                    hub.emit(outgoing)
                return
            if kind == "node":
                if session_id is not None:
                    hub.send(outgoing, session_id)
                return
            if kind == "channel":
                if outgoing.channel == name:
                    if outgoing.position is not None:
                        history = self._history
                        held = history.held.get(name)
                        if held is not None:  # catching up: in order, after what the history has
                            held.append((session_id, outgoing))
                            return
                        if not history.fresh(name, outgoing):
                            return
                    hub.publish(outgoing, hub.sessions.get(session_id) if session_id is not None else None)
            else:
                exclude = hub.sessions.get(session_id) if session_id is not None else None
                hub.broadcast(outgoing, name, exclude)
        except Exception:  # a bug below us must not stop the reader
            logger.exception("broker: delivering a message on %r failed", topic)

    def _surveyed(self, kind: str, data: bytes) -> None:
        """A question to every node (on ``all:nodes``), or an answer to this one's (on its own topic)."""
        if kind == "all" and data[:1] == QUESTION:
            self._survey.answer(data, self._answer)
        elif kind == "node" and data[:1] == ANSWER:
            self._survey.answered(data)

    def _answer(self, question: str, argument: str) -> Any:
        """This node's answer to a question of the HTTP server API (see :class:`Broker`)."""
        hub = self.hub
        assert hub is not None
        if question == "channels":
            return hub.channel_counts()
        if question == "disconnect":
            return hub.disconnect(argument)
        raise ValueError(f"unknown question {question!r}")

    async def channel_counts(self, timeout: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for answer in await self._survey.ask("channels", "", timeout):
            if isinstance(answer, dict):
                for name, count in answer.items():
                    counts[name] = counts.get(name, 0) + (count if type(count) is int else 0)
        return counts

    async def disconnect(self, session_id: str, timeout: float) -> int:
        answers = await self._survey.ask("disconnect", session_id, timeout)
        return sum(answer for answer in answers if type(answer) is int)

    # -- publishing ----------------------------------------------------------------------------------

    def prepare(self, outgoing: Outgoing) -> None:
        outgoing.encoded(envelope.FORM, envelope.body)

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> asyncio.Future[int]:
        channel = outgoing.channel
        assert channel is not None
        topic = self._name("channel", channel)
        if self.hub is None and not self._options_found and not self._warned_no_options:
            self._warned_no_options = True
            logger.warning(
                "broker: no server's settings in Redis at %s (key %s; none connected since Redis "
                "started?): if channel %r keeps a history, this message has no position there and "
                "clients cannot recover it",
                safe_url(self.url),
                self._connection.key("options"),
                channel,
            )
        sender = exclude.session_id if exclude is not None else None
        if self.options.any and outgoing.event is None:
            rule = self.options.history(channel)
            if rule is not None:
                recovery = self.options.recovery
                log = self._sessions.log_args(recovery, "channel", channel) if recovery is not None else None
                return self._history.append(channel, topic, rule, seal(sender, _body(outgoing)), log)
        return self._publish(topic, seal(sender, _body(outgoing)), "channel", channel)

    def broadcast(
        self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None
    ) -> asyncio.Future[int]:
        sender = exclude.session_id if exclude is not None else None
        return self._publish(self._name("group", group), seal(sender, _body(outgoing)), "group", group)

    def send(self, outgoing: Outgoing, session_id: str) -> int | asyncio.Future[int]:
        """``ValueError`` for a ``session_id`` that is no session id; 0 for one of no node."""
        require(check_session_id(session_id))
        node, dot, _ = session_id.partition(".")
        if not dot or not node:
            return 0  # not a session id this broker handed out
        hub = self.hub
        # Ours, and gone; unless a socket away may come back for it (connection state recovery).
        if (
            node == self.node_id
            and hub is not None
            and session_id not in hub.sessions
            and self.options.recovery is None
        ):
            return 0
        envelope = seal(session_id, _body(outgoing))
        return self._publish(self._name("node", node), envelope, "session", session_id)

    def emit(self, outgoing: Outgoing) -> asyncio.Future[int]:
        """One PUBLISH that every node takes: how many nodes there are."""
        return self._publish(self._all_topic, seal(None, _body(outgoing)), "audience", "")

    def _publish(self, topic: bytes, envelope: bytes, target: Target, name: str) -> asyncio.Future[int]:
        """PUBLISH ``envelope``; with connection state recovery, log it as sent to ``target`` too."""
        recovery = self.options.recovery
        if recovery is None:
            return self._queue((self._publish_command, topic, envelope))
        log, *args = self._sessions.log_args(recovery, target, name)
        return self._queue(("EVAL", PUBLISH_LOGGED, 2, log, topic, *args, envelope))

    # -- history and presence --------------------------------------------------------------------------

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        return await self._history.recover(channel, rule, since)

    def presence_join(self, channel: str, session_id: str, info: Any) -> None:
        self._presence.join(channel, session_id, info)

    def presence_leave(self, channel: str, session_id: str) -> None:
        self._presence.leave(channel, session_id)

    def presence_count(self, channel: str) -> asyncio.Future[int]:
        return self._presence.count(channel)

    async def presence(self, channel: str, limit: int | None = None) -> list[dict[str, Any]]:
        return await self._presence.members(channel, limit)

    async def history(self, channel: str, rule: HistoryRule) -> tuple[Position, list[tuple[int, Outgoing]]]:
        return await self._history.contents(channel, rule)

    # -- connection state recovery ----------------------------------------------------------------------

    def keep_session(self, pid: str, session: bytes) -> None:
        if self.options.recovery is not None:
            self._sessions.keep(pid, session, self.options.recovery)

    async def take_session(self, pid: str, offset: str) -> KeptSession | None:
        return await self._sessions.take(pid, offset) if self.options.recovery is not None else None

    async def missed(self, session: KeptSession, offset: str) -> Missed | None:
        found = await self._sessions.missed(session, offset)
        return Missed(*found) if found is not None else None

    def newer(self, offset: str, than: str) -> bool:
        return newer(offset, than)

    def adopt(self, session_id: str) -> None:
        """Take the sends of the node ``session_id`` is of, if another: they are published there."""
        node = session_id.partition(".")[0]
        if node == self.node_id or session_id in self._adopted:
            return
        self._adopted[session_id] = node
        count = self._adopted_nodes.get(node, 0)
        self._adopted_nodes[node] = count + 1
        if not count:
            topic = self._name("node", node)
            self._routes[topic] = ("node", node)
            self._subscriptions.subscribe(topic)

    def release(self, session_id: str) -> None:
        node = self._adopted.pop(session_id, None)
        if node is None:
            return
        count = self._adopted_nodes.pop(node) - 1
        if count:
            self._adopted_nodes[node] = count
        else:
            topic = self._name("node", node)
            self._routes.pop(topic, None)
            self._subscriptions.unsubscribe(topic)


def _body(outgoing: Outgoing) -> bytes:
    return outgoing.encoded(envelope.FORM, envelope.body)
