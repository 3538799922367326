"""Test peers (Node, Redis, a browser): skip where one is missing, fail under TIDINGS_REQUIRE_ALL=1.

CI sets TIDINGS_REQUIRE_ALL=1 so that a missing peer can never pass as a skipped test. The README's
table of test peers lists them all, and how ./test.sh (tests/setup_peers.sh) installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis

NODE_DIR = Path(__file__).parent / "node"
#: The machine's Redis: never flushed or stopped; each run uses a name prefix of its own.
REDIS_URL = "redis://127.0.0.1:6379/0"


def require_all() -> bool:
    return os.environ.get("TIDINGS_REQUIRE_ALL") == "1"


def missing(peer: str, why: str) -> None:
    """Skip the test, or fail it when every peer is required."""
    message = f"{peer} unavailable: {why}"
    if require_all():
        pytest.fail(message + " (TIDINGS_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(message)


def node_packages(directory: Path, *packages: str) -> None:
    """Check that ``node`` is on PATH and that `npm ci` (test.sh runs it) installed ``packages`` there."""
    if shutil.which("node") is None:
        missing("node", "no `node` on PATH")
    for package in packages:
        if not (directory / "node_modules" / package).is_dir():
            missing(f"npm package {package}", f"run `npm ci` in {directory}")


def node_client_script() -> Path:
    """The Node socket.io-client driver, checked to be runnable."""
    node_packages(NODE_DIR, "socket.io-client")
    return NODE_DIR / "client.mjs"


def machine_redis() -> redis.Redis:
    """A client of the machine's Redis, checked to answer; the caller closes it."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        missing("redis", f"no Redis at {REDIS_URL} ({error}); start one: `redis-server --daemonize yes`")
    return client


def package_index() -> None:
    """Check that pip reaches its package index (PyPI, or the one pip is configured with), as a
    fresh venv's `pip install` of tidings needs for its dependencies and build backend."""
    with tempfile.TemporaryDirectory() as scratch:
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--dest", scratch]
        result = subprocess.run([*download, "hatchling"], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        missing("the package index", f"pip could not download from it: {result.stderr.strip()[-300:]}")
