"""The per-address session limits (sans I/O, on a clock of the test's own) and the throttled log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tidings.server import limits
from tidings.server.limits import TOO_MANY_NEW, TOO_MANY_OPEN, AddressLimits, Throttled, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same /64: one client
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client on a dual-stack socket
        ("testclient", "testclient"),  # no IP address: taken as it is
    ],
)
def test_an_address_is_counted_by_its_ipv4_address_or_ipv6_64(host: str, key: str) -> None:
    assert address_key(host) == key


def test_open_sessions_are_counted_per_address_and_free_their_place_when_they_close() -> None:
    limits = AddressLimits(max_open=2, rate=1000, burst=1000, clock=Clock())
    first, second = limits.admit("192.0.2.1"), limits.admit("192.0.2.1")
    assert first == second == ("192.0.2.1", None)
    assert limits.admit("192.0.2.1") == (None, TOO_MANY_OPEN)
    assert limits.admit("192.0.2.2") == ("192.0.2.2", None)  # another address is not held back
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.1") == ("192.0.2.1", None)
    for _ in range(2):
        limits.release("192.0.2.1")
    limits.release("192.0.2.2")
    assert limits.open == {}  # nothing left of addresses without sessions


def test_new_sessions_per_address_follow_a_token_bucket() -> None:
    clock = Clock()
    limits = AddressLimits(max_open=100, rate=2, burst=3, clock=clock)
    assert [limits.admit("192.0.2.1")[1] for _ in range(4)] == [None, None, None, TOO_MANY_NEW]
    assert limits.admit("192.0.2.2")[1] is None  # its own bucket
    clock.now += 0.5  # one token back
    assert [limits.admit("192.0.2.1")[1] for _ in range(2)] == [None, TOO_MANY_NEW]
    clock.now += 100  # full again, not more than full
    assert [limits.admit("192.0.2.1")[1] for _ in range(4)] == [None, None, None, TOO_MANY_NEW]


def test_a_refusal_by_the_open_count_costs_no_token() -> None:
    limits = AddressLimits(max_open=1, rate=1, burst=2, clock=Clock())
    assert limits.admit("192.0.2.1")[1] is None
    assert [limits.admit("192.0.2.1")[1] for _ in range(5)] == [TOO_MANY_OPEN] * 5
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.1")[1] is None


def test_the_rate_table_stays_small_whatever_the_number_of_addresses() -> None:
    clock = Clock()
    limits = AddressLimits(max_open=10, rate=10, burst=10, clock=clock)
    for n in range(100_000):  # a fresh address for each handshake, 1000 handshakes a second
        clock.now += 0.001
        address, reason = limits.admit(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        assert reason is None
        limits.release(address or "")
    # A bucket refills in 0.1 s: only the last ~100 addresses are not full; the rest were swept.
    assert len(limits.new.buckets) <= 2 * 1024


async def test_limits_hit_are_logged_at_most_once_an_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LOG_INTERVAL", 0.05)
    warn = Throttled("refused %s")
    with caplog.at_level(logging.WARNING, "tidings"):
        for address in ("a", "b", "c"):
            warn(address)
        await asyncio.sleep(0.2)
        warn("d")
        await asyncio.sleep(0.2)
    assert [record.getMessage() for record in caplog.records] == [
        "refused a",
        "refused c (2 times in 0.05 s, the last shown)",  # written once the interval is over
        "refused d",
    ]
