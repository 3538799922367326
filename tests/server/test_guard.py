"""The connection limits of `tidings run` (tidings.server.guard), without sockets; tests/hostile/
test_transport.py attacks them over real ones. The guard runs in an event loop (its throttled
warnings use the loop's timers): the tests are coroutines."""

from __future__ import annotations

import pytest

from tidings.server.guard import ConnectionGuard, connection_capacity
from tidings.settings import Settings


async def test_per_address_limit_and_release() -> None:
    limits = ConnectionGuard(Settings(max_connections=100, max_connections_per_address=2), "127.0.0.1")
    first, second = limits.admit(1, "10.0.0.7"), limits.admit(2, "10.0.0.7")
    assert first is not None and second is not None
    assert limits.admit(3, "10.0.0.7") is None
    assert limits.admit(3, "10.0.0.8") is not None  # another address
    first.release()
    first.release()  # once only
    assert limits.counts["10.0.0.7"] == 1
    assert limits.admit(3, "10.0.0.7") is not None


async def test_trusted_proxies_are_exempt_from_the_per_address_limit() -> None:
    limits = ConnectionGuard(Settings(max_connections_per_address=1), "127.0.0.1, 10.1.0.0/16")
    for address in ("127.0.0.1", "127.0.0.1", "10.1.2.3", "10.1.2.3"):
        assert limits.admit(1, address) is not None
    assert limits.counts == {}


async def test_the_process_limit_holds_for_every_address() -> None:
    limits = ConnectionGuard(Settings(max_connections=3), "127.0.0.1")
    assert limits.admit(3, "127.0.0.1") is not None
    assert limits.admit(4, "127.0.0.1") is None  # trusted, but the process is full
    assert limits.admit(4, "10.0.0.7") is None
    assert limits.counts == {}


@pytest.mark.parametrize(
    ("configured", "open_files", "capacity"),
    [
        (100_000, 1_048_576, 100_000),
        (100_000, 20_000, 18_000),  # a tenth kept for the rest
        (100_000, 1024, 922),
        (100_000, 300, 236),  # at least 64 kept
        (10, 20_000, 10),
        (100_000, None, 100_000),  # no such limit
    ],
)
def test_connection_capacity_leaves_room_under_the_open_files_limit(
    configured: int, open_files: int | None, capacity: int
) -> None:
    assert connection_capacity(configured, open_files) == capacity


@pytest.mark.parametrize(
    "name",
    [
        "close_timeout",
        "header_timeout",
        "max_request_head",
        "max_connections",
        "max_connections_per_address",
        "websocket_control_frames_per_minute",
    ],
)
def test_settings_refuse_a_limit_of_zero(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings(**{name: 0})
