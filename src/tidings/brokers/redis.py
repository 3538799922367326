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

History (channels the ``history`` setting names), Redis Streams with the name prefix:

- ``<prefix>history:<channel>``: the stream, ``XADD ... MAXLEN ~ size``; an entry's id is
  ``<offset>-0`` and its field ``d`` the envelope as it was published (its position line first).
- ``<prefix>meta:<channel>``: a hash of ``epoch`` (random, chosen when the history starts) and
  ``offset`` (the last one given). Both keys expire ``ttl`` seconds after the last message.

One script (:data:`PUBLISH_HISTORY`) gives the offset, appends and PUBLISHes, so the order of offsets is
the order of delivery. When the meta hash is gone (expired, or Redis lost it) the next message starts a
new epoch at offset 1.

Presence (channels the ``presence`` setting names): ``<prefix>presence:<channel>``, a hash of session id
to ``[node id, info]``; ``<prefix>alive:<node id>`` is set by each node every ``presence_timeout / 3``
seconds and expires after ``presence_timeout``: entries of a node without it are dropped when presence
is read. ``<prefix>options`` holds the servers' history and presence settings for publishers that serve
nothing.

Keys that only a server's start would write (``options``, this node's ``alive``) are written again
whenever its connection to Redis comes back: a restarted Redis has lost them.
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
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tidings.brokers import PREFIX_ENV, envelope
from tidings.brokers.base import Broker, Kind
from tidings.brokers.envelope import EnvelopeError, open_envelope, seal
from tidings.channels import (
    ChannelOptions,
    HistoryRule,
    check_session_id,
    presence_list,
    recovery_from,
    require,
)
from tidings.errors import BrokerError
from tidings.message import Outgoing, Position, Recovery, Subscriber

logger = logging.getLogger("tidings.broker")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "tidings:"
#: PUBLISH commands sent to Redis in one pipeline (one write, one round trip).
MAX_BATCH = 512
#: Seconds to wait for Redis to confirm subscriptions before a subscribe is answered anyway.
READY_TIMEOUT = 5.0

Route = tuple[Literal["channel", "group", "node"], str]
Command = tuple[Any, ...]

#: KEYS: stream, meta, channel topic. ARGV: size, ttl (ms), an epoch for a new history, the envelope.
#: Gives the message the next offset, appends it to the stream and publishes it with its position.
PUBLISH_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[1])
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local data = '@' .. offset .. ':' .. epoch .. '\\n' .. ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], offset .. '-0', 'd', data)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('PUBLISH', KEYS[3], data)
"""
#: KEYS: stream, meta. ARGV: an epoch for a new history, ttl (ms), the offset since (-1: none), its
#: epoch. Returns {epoch, last offset, entries after the offset (if the epoch is the same)}.
READ_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[1])
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local offset = redis.call('HGET', KEYS[2], 'offset') or '0'
local since = tonumber(ARGV[3])
local entries = {}
if since >= 0 and epoch == ARGV[4] and since < tonumber(offset) then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+')
end
return {epoch, offset, entries}
"""


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
        self._outbox: deque[tuple[Command, asyncio.Future[Any]]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._controller: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._publish_failing = False
        # History channels: the last position this node received, per channel; and, while the node
        # catches up after Redis came back, the live messages held meanwhile.
        self._positions: dict[str, Position] = {}
        self._held: dict[str, list[tuple[str | None, Outgoing]]] = {}
        # Presence channels: how many local members each has (what the heartbeat keeps alive).
        self._present: dict[str, int] = {}
        self._catching_up: set[asyncio.Task[None]] = set()
        # A publisher: whether it found the servers' options in Redis (until then it looks again
        # before each publish), and whether it said that it publishes without them.
        self._options_found = False
        self._warned_no_options = False

    @property
    def reach(self) -> Hashable:
        return ("redis", self.url, self.prefix)

    def __repr__(self) -> str:
        return f"<RedisBroker {safe_url(self.url)} prefix={self.prefix!r} node={self.node_id}>"

    # -- names -------------------------------------------------------------------------------------

    def _name(self, kind: str, name: str) -> bytes:
        return f"{self.prefix}{kind}:{name}".encode()

    def _key(self, kind: str, name: str | None = None) -> str:
        return f"{self.prefix}{kind}" if name is None else f"{self.prefix}{kind}:{name}"

    # -- start and stop ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the publishing connection pool and check Redis answers (what a publisher needs).

        A publisher (a broker without a hub) also reads the servers' history and presence settings,
        here and, for as long as it finds none, each time it is called again.
        """
        if self._redis is None:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=self.connect_timeout, socket_timeout=self.connect_timeout
            )
            try:
                await client.ping()
            except (RedisError, OSError) as error:
                await client.aclose()
                raise BrokerError(f"cannot reach the Redis broker at {safe_url(self.url)}: {error}") from None
            self._redis = client
        if self.hub is None and not self._options_found:
            with contextlib.suppress(RedisError, OSError, ValueError, TypeError, AttributeError):
                stored = await self._redis.get(self._key("options"))
                if stored:
                    self.options = ChannelOptions.from_json(orjson.loads(stored))
                    self._options_found = True

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
            await self._redis.set(*self._options())
            if self.options.presence_rules:
                await self._beat()
                self._heart = loop.create_task(self._heartbeat(), name="tidings-redis-presence")
        except asyncio.TimeoutError:
            await self.stop()
            message = f"the Redis broker at {safe_url(self.url)} did not confirm a subscription"
            raise BrokerError(message) from None
        except (RedisError, OSError) as error:
            await self.stop()
            raise BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}") from None
        self._kick_controller()
        logger.info("broker: %r", self)

    async def stop(self) -> None:
        """Send what is queued (briefly), then close the connections."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # Redis is gone or slow: what is left is lost
                await asyncio.wait_for(asyncio.shield(self._writer), self.connect_timeout)
        if self._heart is not None and self._redis is not None:
            with contextlib.suppress(RedisError, OSError):  # this node's presence entries go now
                await self._redis.delete(self._key("alive", self.node_id))
        tasks = (self._reader, self._controller, self._writer, self._heart)
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(BaseException):  # cancelled or failed: we are closing
                    await task
        self._reader = self._controller = self._writer = self._heart = None
        failure = BrokerError("the broker stopped")
        while self._outbox:
            _fail(self._outbox.popleft()[1], failure)
        self._positions.clear()
        self._held.clear()
        self._present.clear()
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
        if kind == "channel":
            self._positions.pop(name, None)
            self._held.pop(name, None)
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
                    "broker: reconnected to Redis at %s; messages published meanwhile are lost, "
                    "but for channels with history",
                    safe_url(self.url),
                )
                lost, delay = False, 0.05
                self._catch_up_all()
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
            if kind == "channel":
                if outgoing.channel == name:
                    if outgoing.position is not None:
                        held = self._held.get(name)
                        if held is not None:  # catching up: in order, after what the history has
                            held.append((session_id, outgoing))
                            return
                        if not self._fresh(name, outgoing):
                            return
                    hub.publish(outgoing, hub.sessions.get(session_id) if session_id is not None else None)
            else:
                exclude = hub.sessions.get(session_id) if session_id is not None else None
                hub.broadcast(outgoing, name, exclude)
        except Exception:  # a bug below us must not stop the reader
            logger.exception("broker: delivering a message on %r failed", topic)

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
                self._key("options"),
                channel,
            )
        if self.options.any and outgoing.event is None:
            rule = self.options.history(channel)
            if rule is not None:
                sender = exclude.session_id if exclude is not None else None
                stream, meta = self._key("history", channel), self._key("meta", channel)
                ttl = max(1, int(rule.ttl * 1000))
                envelope_ = seal(sender, _body(outgoing))
                args = (rule.size, ttl, secrets.token_urlsafe(6), envelope_)
                return self._queue(("EVAL", PUBLISH_HISTORY, 3, stream, meta, topic, *args))
        return self._enqueue(topic, outgoing, exclude)

    def broadcast(
        self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None
    ) -> asyncio.Future[int]:
        return self._enqueue(self._name("group", group), outgoing, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int | asyncio.Future[int]:
        """``ValueError`` for a ``session_id`` that is no session id; 0 for one of no node."""
        require(check_session_id(session_id))
        node, dot, _ = session_id.partition(".")
        if not dot or not node:
            return 0  # not a session id this broker handed out
        if node == self.node_id and self.hub is not None and session_id not in self.hub.sessions:
            return 0  # ours, and gone
        return self._queue(("PUBLISH", self._name("node", node), seal(session_id, _body(outgoing))))

    def _enqueue(self, topic: bytes, outgoing: Outgoing, exclude: Subscriber | None) -> asyncio.Future[int]:
        sender = exclude.session_id if exclude is not None else None
        return self._queue(("PUBLISH", topic, seal(sender, _body(outgoing))))

    def _queue(self, command: Command) -> asyncio.Future[Any]:
        """Queue one command (PUBLISH: the future gets the number of nodes that took it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._redis is None:
            _fail(future, BrokerError(f"the Redis broker at {safe_url(self.url)} is not connected"))
            return future
        self._outbox.append((command, future))
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
                for command, _ in batch:
                    pipeline.execute_command(*command)
                try:
                    try:
                        results = await pipeline.execute(raise_on_error=False)
                    except RedisConnectionError:
                        if self._publish_failing:
                            raise
                        # A pooled connection Redis closed while it restarted, found out only now:
                        # nothing of the batch reached it. Once more, on a new connection.
                        pipeline = self._redis.pipeline(transaction=False)
                        for command, _ in batch:
                            pipeline.execute_command(*command)
                        results = await pipeline.execute(raise_on_error=False)
                except (RedisError, OSError) as error:
                    failure = BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}")
                    if not self._publish_failing and self.hub is not None:  # a publisher raises instead
                        logger.error("broker: %s; %d message(s) lost", failure, len(batch))
                    self._publish_failing = True
                    for _, future in batch:
                        _fail(future, failure)
                    continue
                if self._publish_failing:
                    if self.hub is not None:
                        logger.warning("broker: publishing to Redis at %s works again", safe_url(self.url))
                    self._publish_failing = False
                for (command, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        logger.error("broker: Redis refused %s: %s", command[0], result)
                        _fail(future, BrokerError(f"Redis refused {command[0]}: {result}"))
                    elif not future.done():
                        future.set_result(result)
        finally:
            self._writer = None

    # -- history and recovery --------------------------------------------------------------------------

    async def recover(self, channel: str, rule: HistoryRule, since: Position | None) -> Recovery:
        position, entries = await self._read_history(channel, rule, since)
        first = entries[0][0] if entries else None
        reason = recovery_from(since, position, first)
        if since is None or reason is not None:
            return Recovery(position, reason=reason)
        return Recovery(position, [outgoing for _, _, outgoing in entries])

    async def _read_history(
        self, channel: str, rule: HistoryRule, since: Position | None
    ) -> tuple[Position, list[tuple[int, str | None, Outgoing]]]:
        """The history's position and its entries after ``since``: (offset, sender, message)."""
        if self._redis is None:
            raise BrokerError(f"the Redis broker at {safe_url(self.url)} is not connected")
        keys = (self._key("history", channel), self._key("meta", channel))
        since_args = (since.offset, since.epoch) if since is not None else (-1, "")
        args = (secrets.token_urlsafe(6), max(1, int(rule.ttl * 1000)), *since_args)
        try:
            epoch, offset, raw = await self._redis.eval(READ_HISTORY, 2, *keys, *args)
        except (RedisError, OSError) as error:
            raise BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}") from None
        entries = []
        for entry_id, fields in raw:
            data = dict(zip(fields[::2], fields[1::2], strict=True)).get(b"d", b"")
            try:
                sender, outgoing = open_envelope(data)
            except EnvelopeError as error:
                logger.error("broker: dropped a history entry of %r: %s", channel, error)
                continue
            entries.append((int(entry_id.partition(b"-")[0]), sender, outgoing))
        return Position(int(offset), epoch.decode()), entries

    def _fresh(self, channel: str, outgoing: Outgoing) -> bool:
        """Whether this node has not had ``outgoing`` yet (a message of a channel with history)."""
        position = outgoing.position
        assert position is not None
        last = self._positions.get(channel)
        if last is not None and last.epoch == position.epoch and position.offset <= last.offset:
            return False
        self._positions[channel] = position
        return True

    def _options(self) -> tuple[str, bytes]:
        """The key and value that tell publishers the servers' history and presence settings."""
        return self._key("options"), orjson.dumps(self.options.to_json())

    def _alive_entry(self) -> Command:
        """The command that says this node is alive, for ``presence_timeout``."""
        expiry = max(1, int(self.options.presence_timeout * 1000))
        return ("SET", self._key("alive", self.node_id), 1, "PX", expiry)

    def _catch_up_all(self) -> None:
        """Redis came back, and may have lost everything (a restart): write the options again, say
        this node is alive and enter its members in presence again (before another node reading
        presence drops them), and deliver what its history channels missed, then go on live."""
        self._queue(("SET", *self._options()))
        if self._heart is not None:
            self._queue(self._alive_entry())
        hub = self.hub
        if hub is not None:
            for channel in self._present:
                for member in hub.channels.get(channel, ()):
                    info = getattr(member, "presence_info", None) or {}
                    with contextlib.suppress(TypeError):
                        entry = orjson.dumps([self.node_id, info])
                        self._queue(("HSET", self._key("presence", channel), member.session_id, entry))
        if not self.options.history_rules:
            return
        loop = asyncio.get_running_loop()
        for kind, name in list(self._routes.values()):
            rule = self.options.history(name) if kind == "channel" else None
            if rule is not None and name not in self._held:
                self._held[name] = []
                task = loop.create_task(self._catch_up(name, rule), name="tidings-redis-catch-up")
                self._catching_up.add(task)
                task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self, channel: str, rule: HistoryRule) -> None:
        delay = 0.05
        since = self._positions.get(channel)
        while True:
            try:
                position, entries = await self._read_history(channel, rule, since)
                if since is None or since.epoch != position.epoch:  # all of this epoch is new here
                    position, entries = await self._read_history(channel, rule, Position(0, position.epoch))
                break
            except BrokerError as error:
                if channel not in self._held:
                    return  # the node left the channel meanwhile
                logger.warning("broker: reading the history of %r failed (%s); retrying", channel, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        held = self._held.pop(channel, None)
        hub = self.hub
        if held is None or hub is None:
            return
        if since is not None and since.epoch != position.epoch:
            logger.warning("broker: the history of channel %r restarted (epoch %s)", channel, position.epoch)
        if (
            entries
            and since is not None
            and since.epoch == position.epoch
            and entries[0][0] > since.offset + 1
        ):
            logger.warning("broker: channel %r lost messages while Redis was away (history trimmed)", channel)
        for sender, outgoing in [*((s, o) for _, s, o in entries), *held]:
            if self._fresh(channel, outgoing):
                try:
                    hub.publish(outgoing, hub.sessions.get(sender) if sender is not None else None)
                except Exception:  # a bug below us must not stop the others
                    logger.exception("broker: delivering a recovered message of %r failed", channel)

    # -- presence --------------------------------------------------------------------------------------

    def presence_join(self, channel: str, session_id: str, info: Any) -> None:
        key = self._key("presence", channel)
        try:
            entry = orjson.dumps([self.node_id, info])
        except TypeError as error:
            logger.error("presence info of %s cannot be stored: %s", session_id, error)
            entry = orjson.dumps([self.node_id, {}])
        self._present[channel] = self._present.get(channel, 0) + 1
        self._queue(("HSET", key, session_id, entry))
        self._queue(("PEXPIRE", key, self._presence_expiry()))

    def presence_leave(self, channel: str, session_id: str) -> None:
        count = self._present.get(channel, 0) - 1
        if count > 0:
            self._present[channel] = count
        else:
            self._present.pop(channel, None)
        self._queue(("HDEL", self._key("presence", channel), session_id))

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        key = self._key("presence", channel)
        raw: dict[bytes, bytes] = await self._queue(("HGETALL", key))  # after this node's own changes
        entries: dict[str, tuple[str, Any]] = {}
        for raw_id, value in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                node, info = orjson.loads(value)
                entries[raw_id.decode()] = (node, info)
        nodes = sorted({node for node, _ in entries.values()} - {self.node_id})
        if nodes and self._redis is not None:
            try:
                alive = await self._redis.mget([self._key("alive", node) for node in nodes])
            except (RedisError, OSError) as error:
                raise BrokerError(f"the Redis broker at {safe_url(self.url)} failed: {error}") from None
            dead = {node for node, value in zip(nodes, alive, strict=True) if value is None}
            gone = [session_id for session_id, (node, _) in entries.items() if node in dead]
            if gone:
                self._queue(("HDEL", key, *gone))
                for session_id in gone:
                    del entries[session_id]
        return presence_list({session_id: info for session_id, (_, info) in entries.items()})

    def _presence_expiry(self) -> int:
        """Milliseconds a presence hash lives without a heartbeat of any node that has members in it."""
        return max(1, int(self.options.presence_timeout * 2000))

    async def _beat(self) -> None:
        """This node is alive (for ``presence_timeout``), and so are its presence hashes."""
        assert self._redis is not None
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.execute_command(*self._alive_entry())
        for channel in self._present:
            pipeline.pexpire(self._key("presence", channel), self._presence_expiry())
        await pipeline.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.presence_timeout / 3)
            try:
                await self._beat()
            except (RedisError, OSError) as error:
                logger.debug("broker: presence heartbeat failed: %s", error)


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
