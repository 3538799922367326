"""The benchmark suite's smoke test: `python -m bench --quick` runs to its end and writes its results.

A smoke test, never a timed assertion: it checks that every server was measured on every measure and
that the JSON is well formed, not how fast anything was. It needs the suite's peers (Node, the npm
packages of bench/node, matplotlib from the `bench` extra): skipped without them, failed under
TIDINGS_REQUIRE_ALL=1.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import missing, node_packages

ROOT = Path(__file__).resolve().parents[2]
BENCH_NODE = ROOT / "bench" / "node"
SERVERS = {"tidings", "python-socketio", "node-socket.io", "limit"}
MEASURES = {"fanout", "idle_memory", "connection_rate", "echo", "echo_def", "polling"}
WEBSOCKET_ONLY = {"limit"}  # serves no long-polling


def require_peers() -> None:
    node_packages(BENCH_NODE, "socket.io", "ws")
    if importlib.util.find_spec("matplotlib") is None:
        missing("matplotlib", "install the bench extra: pip install -e '.[bench]'")


def measured_or_behind(latency: dict[str, object]) -> bool:
    """Percentiles, or a server too slow for the equal-load rate (python-socketio at Node's): behind."""
    if latency.get("behind_messages"):
        return latency["p50_ms"] is None
    return latency["samples"] > 0 and latency["p50_ms"] <= latency["p99_ms"]  # type: ignore[operator]


@pytest.mark.timeout(200)  # above the run's own 150 s, so that a slow run fails with its output
def test_quick_suite_measures_every_server(tmp_path: Path) -> None:
    require_peers()
    command = [sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)]
    try:
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`python -m bench --quick` ran past 150 s:\n{error.stdout}")
    assert run.returncode == 0, f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"
    assert "| measure" in run.stdout  # the table was printed

    document = json.loads((tmp_path / "quick.json").read_text())
    assert document["mode"] == "quick"
    assert document["machine"]["nproc"] >= 1 and document["machine"]["node"].startswith("v")
    assert set(document["servers"]) == SERVERS
    # Latency at equal load: one rate per size (and one for long-polling), from Node socket.io's peaks.
    equal = document["equal_load"]
    assert equal["reference"] == "node-socket.io"
    assert set(equal["deliveries_per_s"]) == {
        *(str(size) for size in document["settings"]["sizes"]),
        "polling",
    }
    for name, server in document["servers"].items():
        assert set(server) >= MEASURES, name
        fanout = server["fanout"]
        assert set(fanout) == {str(size) for size in document["settings"]["sizes"]}, name
        for size, result in fanout.items():
            assert "error" not in result, (name, result)
            assert result["subscribers"] == int(size)
            assert result["peak"]["deliveries_per_s"] > 0
            latency = result["latency"]
            assert latency["samples"] > 0 and latency["p50_ms"] <= latency["p99_ms"], (name, latency)
            assert measured_or_behind(result["equal_load"]), (name, result["equal_load"])
            asked = result["equal_load"]["deliveries_per_s_asked"]
            assert asked == round(equal["deliveries_per_s"][size]), (name, asked)
        polling = server["polling"]
        if name in WEBSOCKET_ONLY:
            assert "skipped" in polling, (name, polling)
        else:
            assert "error" not in polling, (name, polling)
            assert polling["transport"] == "polling"
            assert polling["subscribers"] == document["settings"]["polling_clients"]
            assert polling["peak"]["deliveries_per_s"] > 0
            latency = polling["equal_load"]
            assert measured_or_behind(latency), (name, latency)
            assert latency["deliveries_per_s_asked"] == round(equal["deliveries_per_s"]["polling"])
        idle = server["idle_memory"]
        assert "error" not in idle, (name, idle)
        assert idle["connections"] == document["settings"]["idle_connections"]
        assert isinstance(idle["kib_per_connection"], float | int)
        rate = server["connection_rate"]
        assert "error" not in rate, (name, rate)
        assert rate["connections"] > 0 and rate["failed"] == 0, (name, rate)
        for measure in ("echo", "echo_def"):
            echo = server[measure]
            assert "error" not in echo, (name, measure, echo)
            assert echo["clients"] == document["settings"]["echo_clients"]
            assert echo["round_trips"] > 0 and echo["p50_ms"] <= echo["p99_ms"], (name, measure, echo)
    assert document["chart"] and (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")
