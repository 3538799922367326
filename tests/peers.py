"""Test peers (Node, Redis, a browser): skip where one is missing, fail under TIDINGS_REQUIRE_ALL=1.

CI sets TIDINGS_REQUIRE_ALL=1 so that a missing peer can never pass as a skipped test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def require_all() -> bool:
    return os.environ.get("TIDINGS_REQUIRE_ALL") == "1"


def missing(peer: str, why: str) -> None:
    """Skip the test, or fail it when every peer is required."""
    message = f"{peer} unavailable: {why}"
    if require_all():
        pytest.fail(message + " (TIDINGS_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(message)


def node_client_script() -> Path:
    """The Node socket.io-client driver, checked to be runnable."""
    if shutil.which("node") is None:
        missing("node", "no `node` on PATH")
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        missing("socket.io-client", f"run `npm ci` in {NODE_DIR}")
    return NODE_DIR / "client.mjs"


def package_index() -> None:
    """Check that pip reaches its package index (PyPI, or the one pip is configured with), as a
    fresh venv's `pip install` of tidings needs for its dependencies and build backend."""
    with tempfile.TemporaryDirectory() as scratch:
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--dest", scratch]
        result = subprocess.run([*download, "hatchling"], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        missing("the package index", f"pip could not download from it: {result.stderr.strip()[-300:]}")
