"""The presence benchmark's smoke test: `bench/presence_scale.py --quick` joins 300 WebSocket clients to
a channel without presence and to one with it, then drops them all: every join is acked, and the
watcher is told that all came and that all went. The figures it prints are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_joins_and_the_mass_disconnect_are_measured(tmp_path: Path) -> None:
    result_file = tmp_path / "presence.json"
    run = subprocess.run(
        [sys.executable, "bench/presence_scale.py", "--quick", "--json", str(result_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["channel"]: row for row in json.loads(result_file.read_text())["rows"]}
    assert rows["plain"]["finished"] == rows["presence"]["finished"] == 1
    assert rows["presence"]["told_all_here_seconds"] is not None
    assert rows["presence"]["clear_seconds"] is not None
