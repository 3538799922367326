"""`bench/scale.py --quick` at 2,500 subscribers, 1,250 from each of two source addresses (127.0.0.2 and
127.0.0.3: past tidings' default of 1,000 connections per address, which the suite's app lifts), on
tidings and on Node socket.io, each measured to its end: the RSS per connection, one broadcast's
last delivery and a steady rate to all, and the limits the run set are recorded. A smoke test: no
time or size is checked. It needs the suite's peers (Node and the npm packages of bench/node)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import node_packages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_every_subscriber_of_every_server_gets_the_broadcasts(tmp_path: Path) -> None:
    node_packages(ROOT / "bench" / "node", "socket.io", "ws")
    command = [
        sys.executable,
        "bench/scale.py",
        "--quick",
        "--connections",
        "2500",
        "--per-process",
        "1250",
        "--output",
        str(tmp_path),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"
    assert "| RSS per connection, KiB |" in run.stdout

    document = json.loads((tmp_path / "scale-quick.json").read_text())
    limits = document["limits"]
    assert limits["connections_run"] == 2500 and limits["generator_processes"] == 2
    assert limits["source_addresses"] == ["127.0.0.2", "127.0.0.3"]
    assert (
        limits["open_files_soft"] == limits["open_files_hard"]
        or limits["open_files_hard"] == resource.RLIM_INFINITY
    )
    assert set(document["servers"]) == {"tidings", "node-socket.io"}
    for name, server in document["servers"].items():
        assert "error" not in server, (name, server)
        (result,) = server["runs"]
        assert result["subscribers"] == 2500 and result["source_addresses"] == limits["source_addresses"]
        assert result["rss_after_kib"] > result["rss_before_kib"], name
        broadcast = result["broadcast"]
        assert 0 < broadcast["p50_ms"] <= broadcast["last_ms"], (name, broadcast)
        assert broadcast["server_cpu_ms"] >= 0, (name, broadcast)
        assert result["steady"]["deliveries_per_s"] > 0, name
    assert (tmp_path / "scale-quick.png").read_bytes().startswith(b"\x89PNG")
