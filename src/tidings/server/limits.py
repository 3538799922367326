"""Per-address limits on new Engine.IO sessions (and on Admin UI logins), and a log line that an
attack cannot flood.

Nothing here touches a socket; the per-address limits take their clock as a parameter.

A client's address is the host of the ASGI ``scope["client"]``: the peer's address, or the one a
trusted proxy named (uvicorn's proxy-headers middleware rewrites it, see docs/deploy.md). An IPv6
client is counted by its /64 network, the smallest block one subscriber gets, so that an attacker
cannot take a fresh address for each session.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("tidings")

#: Why a handshake was refused (the ``message`` of the Engine.IO error body).
TOO_MANY_OPEN = "Too many sessions from this address"
TOO_MANY_NEW = "Too many new sessions from this address"
#: Fewer entries than this in the rate table are never swept.
_SWEEP_FLOOR = 1024


def address_key(host: str) -> str:
    """What sessions from ``host`` are counted under: an IPv4 address, an IPv6 /64 network, or
    ``host`` itself if it is no IP address."""
    if ":" not in host:  # an IPv4 address (or a name): itself, without the cost of parsing it
        return host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return host


def uncount(counts: dict[str, int], key: str) -> None:
    """One fewer under ``key``; the key goes once none is left, so that a table of counts per address
    holds only the addresses that have something open."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class TokenBuckets:
    """A token bucket per key: up to ``burst`` at once, then ``rate`` per second.

    The table holds a key only while its bucket is not full: a full bucket is the same as none. It
    is swept when it has doubled since the last sweep, so it stays at about twice the keys that
    took tokens faster than ``rate`` lately, however many keys come by.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        #: key -> (tokens, when counted); only keys whose bucket is not full.
        self.buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _SWEEP_FLOOR

    def take(self, key: str) -> bool:
        """Whether ``key`` has a token left, which it then spends."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            return False
        self.buckets[key] = (tokens - 1, now)
        if len(self.buckets) > self._sweep_at:
            self._sweep(now)
        return True

    def _tokens(self, key: str, now: float) -> float:
        bucket = self.buckets.get(key)
        if bucket is None:
            return self.burst
        tokens, then = bucket
        return min(self.burst, tokens + (now - then) * self.rate)

    def _sweep(self, now: float) -> None:
        full = [key for key in self.buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self.buckets[key]
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self.buckets))


class AddressLimits:
    """How many sessions each client address holds open, and a token bucket of new sessions per address."""

    def __init__(
        self, max_open: int, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_open = max_open
        self.new = TokenBuckets(rate, burst, clock)
        self.open: dict[str, int] = {}

    def admit(self, host: str) -> tuple[str | None, str | None]:
        """``(key, None)``: a new session from ``host`` may open, counted under ``key`` until
        :meth:`release`; ``(None, reason)``: refused."""
        key = address_key(host)
        if self.open.get(key, 0) >= self.max_open:
            return None, TOO_MANY_OPEN
        if not self.new.take(key):
            return None, TOO_MANY_NEW
        self.open[key] = self.open.get(key, 0) + 1
        return key, None

    def release(self, key: str) -> None:
        """A session counted under ``key`` closed."""
        uncount(self.open, key)


#: Seconds between two warnings of the same kind (limits hit during an attack).
LOG_INTERVAL = 10.0


class Throttled:
    """A log message written at once the first time, then at most once every ``LOG_INTERVAL``
    seconds, saying how many times it happened meanwhile (with the last one's arguments): a flood
    of refusals must not become a flood of log lines. Called on an event loop (the summary of an
    interval is written by a timer when it ends)."""

    __slots__ = ("args", "count", "level", "logger", "message", "next_time", "timer")

    def __init__(self, message: str, level: int = logging.WARNING, logger: logging.Logger = logger) -> None:
        self.logger = logger
        self.message = message
        self.level = level
        self.args: tuple[object, ...] = ()
        self.count = 0  # times since the last message
        self.next_time = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, *args: object) -> None:
        self.args = args
        self.count += 1
        now = time.monotonic()
        if now >= self.next_time:
            self._write()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.next_time - now, self._write)

    def _write(self) -> None:
        self.timer = None
        if self.count == 1:
            self.logger.log(self.level, self.message, *self.args)
        else:
            summary = self.message + " (%d times in %g s, the last shown)"
            self.logger.log(self.level, summary, *self.args, self.count, LOG_INTERVAL)
        self.count = 0
        self.next_time = time.monotonic() + LOG_INTERVAL
