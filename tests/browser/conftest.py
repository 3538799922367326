"""Headless Chromium (Debian's `chromium`, installed by test.sh) driven by Playwright, and the demo server.

Playwright launches the system browser (no browser download); a missing browser or Playwright is a
missing peer (tests/peers.py): a skip, or a failure under TIDINGS_REQUIRE_ALL=1.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.peers import missing
from tests.serving import ROOT, TidingsProcess, tidings_process

CHROMIUM = "/usr/bin/chromium"
#: Screenshots and traces of the run (ignored by git; CI keeps the folder as the run's artifacts).
ARTIFACTS = ROOT / "artifacts" / "browser"
# As root in a container, without the sandbox; without the network-chatter flags Chromium's background
# connections are refused by this machine's closed network, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Not for the whole session: while Playwright's sync API runs, its event loop is this thread's, and
# the asyncio tests that follow could not run theirs.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        missing("chromium", f"no {CHROMIUM}: `apt-get install chromium` (test.sh does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def demo() -> Iterator[TidingsProcess]:
    """`tidings demo` on a free port, as a user starts it."""
    with tidings_process(None) as server:
        yield server


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
