"""The Redis broker's subscriber connection: its (un)subscribes, in order, and their confirmations.

A node SUBSCRIBEs to a topic when the hub gets its first local member of a channel or group and
UNSUBSCRIBEs when the last one leaves. The requests go out in the order the hub made them, runs of
the same kind as one command, from one controller task; one that fails is sent again, in its place,
once Redis answers. Redis confirms each SUBSCRIBE on the connection: :meth:`Subscriptions.ready`
waits for those, so a client's ``subscribe`` is acked once the node takes the channel's messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from tidings.brokers.redis.connection import cancel
from tidings.settings import REDIS_READY_TIMEOUT

logger = logging.getLogger("tidings.broker")


class Subscriptions:
    """What the subscriber connection should subscribe to, sent in order, and what Redis confirmed."""

    def __init__(self) -> None:
        self.pubsub: Any = None  # redis.asyncio.client.PubSub (Shards on a Redis Cluster), once started
        # SUBSCRIBE (True) / UNSUBSCRIBE (False) requests in the order the hub made them.
        self._control: deque[tuple[bool, bytes]] = deque()
        # Per topic, the subscribes Redis has not confirmed yet (see ready()).
        self._unconfirmed: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._controller: asyncio.Task[None] | None = None
        #: Seconds to wait for Redis to confirm subscriptions before a subscribe is answered anyway:
        #: ``redis_ready_timeout``.
        self.ready_timeout = REDIS_READY_TIMEOUT

    def subscribe(self, topic: bytes) -> None:
        """Subscribe to ``topic`` (once the connection is open); :meth:`ready` waits for it."""
        self.expect_confirmation(topic)
        self._control.append((True, topic))
        self.kick()

    def unsubscribe(self, topic: bytes) -> None:
        self._control.append((False, topic))
        self.kick()

    async def ready(self) -> None:
        """Return once Redis confirmed the subscribes asked for so far, or after :attr:`ready_timeout`."""
        waiting = [future for futures in self._unconfirmed.values() for future in futures]
        if waiting:
            timeout = self.ready_timeout
            _, late = await asyncio.wait(waiting, timeout=timeout)
            if late:
                logger.warning("broker: %d subscription(s) unconfirmed after %ss", len(late), timeout)

    def expect_confirmation(self, topic: bytes) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._unconfirmed.setdefault(topic, deque()).append(future)
        return future

    def confirmed(self, topic: bytes) -> None:
        """Redis confirmed a subscribe to ``topic`` (the reader saw it on the connection)."""
        waiting = self._unconfirmed.get(topic)
        if waiting:
            future = waiting.popleft()
            if not waiting:
                del self._unconfirmed[topic]
            if not future.done():
                future.set_result(None)

    def kick(self) -> None:
        """Start sending the requests, if there are any and the connection is open."""
        if self._controller is None and self.pubsub is not None and self._control:
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
                        await self.pubsub.subscribe(*topics)
                    else:
                        await self.pubsub.unsubscribe(*topics)
                # Not only RedisError and OSError: on a connection that broke under the call (Redis
                # restarted) uvloop raises RuntimeError, redis-py AttributeError or RuntimeError
                # when the reader reconnects it at the same time.
                except Exception as error:
                    # Not sent: put them back first, in order, and try again when Redis is back.
                    logger.warning("broker: (un)subscribe failed (%r); retrying", error)
                    self._control.extendleft((subscribe, t) for t in reversed(topics))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                else:
                    delay = 0.05
        finally:
            self._controller = None

    async def stop(self) -> None:
        """Stop sending requests and forget them; whoever waits for a confirmation is cancelled."""
        controller, self._controller = self._controller, None
        await cancel(controller)
        for waiting in self._unconfirmed.values():
            for future in waiting:
                future.cancel()
        self._unconfirmed.clear()
        self._control.clear()

    async def close(self) -> None:
        """Close the subscriber connection (after :meth:`stop`)."""
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            await pubsub.aclose()
