"""The Redis broker: several server processes and machines share channels through Redis pub/sub.

- :mod:`~tidings.brokers.redis.broker`: :class:`RedisBroker`, routing and publishing;
- :mod:`~tidings.brokers.redis.connection`: the publishing connection and its pipelined queue;
- :mod:`~tidings.brokers.redis.subscriptions`: the subscriber connection's (un)subscribes;
- :mod:`~tidings.brokers.redis.history`: channel histories in Redis Streams, and recovery;
- :mod:`~tidings.brokers.redis.presence`: who is in a channel, on every node;
- :mod:`~tidings.brokers.redis.scripts`: the Lua scripts of the histories.
"""

from tidings.brokers.redis.broker import DEFAULT_PREFIX, DEFAULT_URL, RedisBroker
from tidings.brokers.redis.connection import safe_url

__all__ = ["DEFAULT_PREFIX", "DEFAULT_URL", "RedisBroker", "safe_url"]
