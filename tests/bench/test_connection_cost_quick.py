"""`bench/connection_cost.py` runs its connections to the end: each one is opened, answered and
closed through the real protocol objects (it waits for the open packet, the CONNECT answer and the
close), so a connection path that stops answering hangs it and fails this test. No time is checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_connections_go_through_the_whole_path() -> None:
    run = subprocess.run(
        [sys.executable, "bench/connection_cost.py", "--connections", "50", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r".+: [\d.]+ µs CPU per connection \(median; rounds: \d+ \d+\)\n", run.stdout)
