"""The reconnect storm's smoke test: `bench/reconnect_storm.py --quick` gets 500 clients of each setup
(tidings.js and socket.io-client against tidings, socket.io-client against Node socket.io) subscribed,
kills the server and starts it again: every client is subscribed again, and none gave up. A smoke test,
never a timed assertion: how long it took is the script's figure, not the test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import node_packages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(200)
def test_every_client_is_subscribed_again_after_the_server_restarts(tmp_path: Path) -> None:
    node_packages(ROOT / "bench" / "node", "socket.io", "socket.io-client", "ws")
    result_file = tmp_path / "storm.json"
    run = subprocess.run(
        [sys.executable, "bench/reconnect_storm.py", "--quick", "--json", str(result_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(result_file.read_text())
    setups = [result["setup"] for result in document["results"]]
    assert setups == ["tidings+tidings.js", "tidings+socket.io-client", "node-socket.io+socket.io-client"]
    for result in document["results"]:
        assert result["back"] == result["clients"] == 500, result
        assert result["giveups"] == 0, result
        assert 0 < result["back_p50_s"] <= result["back_p99_s"] <= result["all_back_after_kill_s"], result
