"""Short-lived claims on a nickname in a room: one socket at a time checks and takes a name.

Who is in a room is its presence, on every process sharing the broker. Reading it, then joining,
leaves a gap in which another socket can read the same presence and join under the same name. A
claim closes the gap: a socket claims ``room:name`` first, reads the presence, joins, and lets the
claim go once its presence entry is written, so the next claimant sees it. A claim that is held
already is refused, not waited for: of two sockets taking one name at once, one is told it is taken.

With the memory broker the claims are a dict in this process; with the Redis broker, keys of Redis
(``SET NX``) under the broker's prefix, which expire after :data:`CLAIM_SECONDS` if the process that
took one dies holding it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Protocol

from tidings.brokers import Broker, BrokerError

logger = logging.getLogger("tidings.demo")

#: How long a Redis claim outlives a process that died holding it (a claim is held for a presence
#: read and a join: milliseconds).
CLAIM_SECONDS = 10

# Deletes the claim only if it is still the caller's (it may have expired and been taken since).
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


class Claims(Protocol):
    def take(self, key: str, owner: str) -> bool:
        """Claim ``key`` for ``owner``; False if somebody holds it."""

    def release(self, key: str, owner: str) -> None:
        """Let ``key`` go, if ``owner`` holds it."""


class LocalClaims:
    """Claims of one process (the memory broker: its rooms are this process's)."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()  # handlers run in a thread pool

    def take(self, key: str, owner: str) -> bool:
        with self._lock:
            return self._held.setdefault(key, owner) == owner

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self._held.get(key) == owner:
                del self._held[key]


class RedisClaims:
    """Claims shared by the processes of one Redis broker (same URL and prefix)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis  # only with the Redis broker, as tidings.brokers imports it

        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_timeout=CLAIM_SECONDS)
        self._prefix = f"{prefix}demo:claim:"
        self._release = self._client.register_script(_RELEASE)

    def take(self, key: str, owner: str) -> bool:
        try:
            return bool(self._client.set(self._prefix + key, owner, nx=True, ex=CLAIM_SECONDS))
        except self._errors as error:
            raise BrokerError(f"Redis cannot be reached: {error}") from None

    def release(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[self._prefix + key], args=[owner])
        except self._errors as error:
            logger.warning("the claim %r stays until it expires: %s", key, error)


_claims: dict[Hashable, Claims] = {}
_claims_lock = threading.Lock()


def claims_for(broker: Broker) -> Claims:
    """The claims of the sockets ``broker`` reaches (one set per broker reach, made on first use)."""
    with _claims_lock:
        claims = _claims.get(broker.reach)
        if claims is None:
            claims = _claims[broker.reach] = _new_claims(broker)
        return claims


def _new_claims(broker: Broker) -> Claims:
    if broker.remote:
        from tidings.brokers.redis import RedisBroker  # redis-py only with the Redis broker

        if isinstance(broker, RedisBroker):
            return RedisClaims(broker.url, broker.prefix)
    return LocalClaims()
