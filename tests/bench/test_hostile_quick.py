"""The hostile soak's smoke test: `python -m bench.hostile --quick` runs every attack at once against
a real `tidings run` for 10 s; the bystander loses nothing, the server lives, and its memory stays
within a bound no attack alone could keep it under before the limits of docs/security.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_attack_at_once_leaves_the_bystander_whole() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.hostile", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["bystander_messages"] > 0
    assert all(attack["rounds"] >= 1 and not attack["errors"] for attack in result["attacks"].values())
    grown = result["server_rss_mib"]["peak"] - result["server_rss_mib"]["start"]
    assert grown < 150, f"the server grew by {grown:.0f} MiB under the attacks"
