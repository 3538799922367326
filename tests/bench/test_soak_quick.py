"""The soak's smoke test: `bench/soak.py --quick` runs two `tidings run` workers behind a Redis of its
own, 500 WebSocket clients in 10 history channels, kills one worker and restarts Redis during a 20 s
run: every client gets every number of its channel once and in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_message_is_lost_or_duplicated_across_a_worker_kill_and_a_redis_restart(tmp_path: Path) -> None:
    result_file = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--quick", "--json", str(result_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(result_file.read_text())
    assert [event["event"] for event in result["events"]] == ["worker 1 killed", "redis restarted"]
    assert result["client_reconnects"] > 0
    assert result["published"] > 0
    assert result["deliveries"] == result["expected_deliveries"]
    assert (result["lost"], result["duplicated"], result["unrecovered"]) == (0, 0, {})
