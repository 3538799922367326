"""Per-address limits on new Engine.IO sessions, and a log line that an attack cannot flood.

Sans-I/O: the clock is a parameter, nothing here touches a socket.

A client's address is the host of the ASGI ``scope["client"]``: the peer's address, or the one a
trusted proxy named (uvicorn's proxy-headers middleware rewrites it, see docs/deploy.md). An IPv6
client is counted by its /64 network, the smallest block one subscriber gets, so that an attacker
cannot take a fresh address for each session.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

#: Why a handshake was refused (the ``message`` of the Engine.IO error body).
TOO_MANY_OPEN = "Too many sessions from this address"
TOO_MANY_NEW = "Too many new sessions from this address"
#: Fewer entries than this in the rate table are never swept.
_SWEEP_FLOOR = 1024


def address_key(host: str) -> str:
    """What sessions from ``host`` are counted under: an IPv4 address, an IPv6 /64 network, or
    ``host`` itself if it is no IP address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return host


class AddressLimits:
    """How many sessions each client address holds open, and a token bucket of new sessions per address.

    The rate table holds an address only while its bucket is not full: a full bucket is the same as
    none. It is swept when it has doubled since the last sweep, so it stays at about twice the
    addresses that opened sessions faster than ``rate`` lately, however many addresses come by.
    """

    def __init__(
        self, max_open: int, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_open = max_open
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self.open: dict[str, int] = {}
        #: address -> (tokens, when counted); only addresses whose bucket is not full.
        self.buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _SWEEP_FLOOR

    def admit(self, host: str) -> tuple[str | None, str | None]:
        """``(key, None)``: a new session from ``host`` may open, counted under ``key`` until
        :meth:`release`; ``(None, reason)``: refused."""
        key = address_key(host)
        if self.open.get(key, 0) >= self.max_open:
            return None, TOO_MANY_OPEN
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            return None, TOO_MANY_NEW
        self.buckets[key] = (tokens - 1, now)
        if len(self.buckets) > self._sweep_at:
            self._sweep(now)
        self.open[key] = self.open.get(key, 0) + 1
        return key, None

    def release(self, key: str) -> None:
        """A session counted under ``key`` closed."""
        count = self.open.get(key, 0) - 1
        if count > 0:
            self.open[key] = count
        else:
            self.open.pop(key, None)

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


class RefusalLog:
    """Logs refusals at most once per ``interval`` seconds, each line saying how many there were since
    the last one: a flood of refused handshakes must not become a flood of log lines."""

    def __init__(
        self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    def refused(self, message: str, *args: object) -> None:
        """One refusal; ``message % args`` describes it (the latest, if several share a line)."""
        self._unlogged += 1
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._interval:
            return
        since = f" ({self._unlogged} refused since the last such line)" if self._logged_at is not None else ""
        self._logger.warning("refusing a new session: " + message + since, *args)
        self._logged_at = now
        self._unlogged = 0
