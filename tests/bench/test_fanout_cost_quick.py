"""`bench/fanout_cost.py` runs its broadcasts to the end: every read of publishes is awaited until every
subscriber's transport was written every message of it, through the real protocol objects, so a fan-out
path that drops a delivery hangs it and fails this test. No time is checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_every_subscriber_gets_every_message() -> None:
    command = [
        sys.executable,
        "bench/fanout_cost.py",
        "--subscribers",
        "50",
        "--messages",
        "20",
        "--rounds",
        "2",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r".+: \d+ ns CPU per delivery \(median; rounds: \d+ \d+\)\n", run.stdout)
