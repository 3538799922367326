"""The Redis broker's connection state recovery: kept sessions and the packet log, shared by every node,
so that a client whose transport dropped on one node recovers on any (the model is in
:mod:`tidings.channels`).

Under the name prefix:

- ``<prefix>session:<pid>``: a kept session, as JSON, expiring ``connection_state_recovery`` seconds
  after its socket's transport dropped. Taking it deletes it (:data:`~scripts.TAKE_SESSION`).
- ``<prefix>recovery``: the packet log, a Redis stream. Every message a node publishes goes through a
  script (:data:`~scripts.PUBLISH_LOGGED`, or :data:`~scripts.PUBLISH_HISTORY` given the log) that
  appends it, as published, with its route (``channel:<name>``, ``group:<name>``, ``session:<id>``)
  and publishes it with its entry id as its log offset: an offset every node knows, in the order
  Redis delivers the messages. About ``recovery_max_packets`` entries, none much older than
  ``connection_state_recovery`` seconds; the key expires as long after the last message.

Every command goes through the broker's queue, in the order the node's calls were made: a session a
socket leaves behind is kept before anything the node does after.
"""

from __future__ import annotations

import logging

from tidings.brokers.envelope import LOG_OFFSET, EnvelopeError, open_envelope
from tidings.brokers.redis.connection import RedisConnection
from tidings.brokers.redis.scripts import TAKE_SESSION
from tidings.channels import KeptSession, RecoveryRule, Target
from tidings.message import Outgoing

logger = logging.getLogger("tidings.broker")

TARGETS: dict[str, Target] = {
    "channel": "channel",
    "group": "group",
    "session": "session",
    "audience": "audience",
}


class RedisSessions:
    """Kept sessions and the packet log of one broker, in Redis."""

    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection
        #: The key of the packet log.
        self.log = connection.key("recovery")

    def log_args(self, rule: RecoveryRule, target: Target, name: str) -> tuple[str, int, int, str]:
        """The log's key and the arguments of its step in a publishing script: size, ttl, route."""
        return self.log, rule.max_packets, _ms(rule.duration), f"{target}:{name}"

    def keep(self, pid: str, session: bytes, rule: RecoveryRule) -> None:
        self.connection.queue(("SET", self.connection.key("session", pid), session, "PX", _ms(rule.duration)))

    async def take(self, pid: str, offset: str) -> KeptSession | None:
        if not LOG_OFFSET.fullmatch(offset):
            return None  # no offset of this log (Redis would refuse it as a stream id)
        key = self.connection.key("session", pid)
        data = await self.connection.queue(("EVAL", TAKE_SESSION, 2, key, self.log, offset), write=False)
        return KeptSession.from_json(data) if data is not None else None

    async def missed(self, session: KeptSession, offset: str) -> tuple[list[Outgoing], str] | None:
        entries = await self.connection.queue(("XRANGE", self.log, offset, "+"), write=False)
        if not entries or entries[0][0].decode() != offset:
            return None  # trimmed since
        messages = []
        for entry_id, fields in entries[1:]:
            kind, _, name = fields.get(b"r", b"").decode().partition(":")
            target = TARGETS.get(kind)
            if target is None or (target == "session" and name != session.session_id):
                continue  # the common case, told without opening the envelope
            try:
                session_id, outgoing = open_envelope(fields.get(b"d", b""))
            except EnvelopeError as error:
                logger.error("broker: dropped a packet of the recovery log: %s", error)
                continue
            if session.addressed(target, name, session_id, outgoing.audience):
                outgoing.log_offset = entry_id.decode()
                messages.append(outgoing)
        return messages, entries[-1][0].decode()


def newer(offset: str, than: str) -> bool:
    """Whether stream id ``offset`` comes after ``than``."""
    return _id(offset) > _id(than)


def _id(offset: str) -> tuple[int, int]:
    milliseconds, _, sequence = offset.partition("-")
    return int(milliseconds), int(sequence or 0)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
