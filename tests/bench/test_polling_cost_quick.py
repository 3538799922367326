"""`bench/polling_cost.py` runs its polls to the end: each message is published through the real
protocol objects and must reach every client's pending GET (it waits for each response and checks it
holds the message), so a polling path that stops answering hangs it and fails this test. No time is
checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_every_poll_is_answered_with_the_message() -> None:
    run = subprocess.run(
        [sys.executable, "bench/polling_cost.py", "--clients", "20", "--messages", "10", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r".+: [\d.]+ µs CPU per poll \(median; rounds: [\d.]+ [\d.]+\)\n", run.stdout)
