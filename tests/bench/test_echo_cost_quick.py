"""`bench/echo_cost.py` runs its echoes to the end, with an `async def` and with a `def` handler: each
echo waits for its ack through the real protocol objects (and, for `def`, the handler threads), so a
dispatch that stops answering hangs it and fails this test. No time is checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("handler", ["async", "def"])
def test_echoes_go_through_the_whole_path(handler: str) -> None:
    run = subprocess.run(
        [sys.executable, "bench/echo_cost.py", "--handler", handler, "--events", "100", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r".+: [\d.]+ µs CPU per echo, .+ \(median; rounds: [\d.]+ [\d.]+\)\n", run.stdout)
