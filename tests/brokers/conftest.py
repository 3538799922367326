"""Fixtures of the broker tests: the machine's Redis (required), a prefix per module, a Redis of one's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.brokers.cluster import OwnRedis, new_prefix
from tests.peers import machine_redis


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = machine_redis()
    yield client
    client.close()


@pytest.fixture(scope="module")
def prefix(redis_client: redis.Redis) -> str:
    """This module's Redis name prefix."""
    return new_prefix()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
