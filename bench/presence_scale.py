"""Presence at scale: joins/s into one channel with and without presence, and a mass disconnect.

    .venv/bin/python bench/presence_scale.py [--clients 3000 10000] [--rounds 3] [--budget 60]
                                             [--src DIR] [--label NAME] [--compare-src DIR]
                                             [--compare-label NAME] [--profile DIR]
                                             [--profile-seconds 10] [--quick]
                                             [--json PATH] [--chart PATH]

Serves bench/apps/tidings_presence.py (channels `pres-*` have presence) with `tidings run`, a fresh
process for each measure, and runs bench/node/presence_client.mjs against it: a watcher socket joins
the channel, then CLIENTS sockets connect and subscribe, 100 at a time. Measured: the joins per
second (connect + subscribe acked), on a channel without presence (`plain-*`) and on one with it;
with presence, how long until the watcher has been told everyone is here, and then, every other
socket dropped at once, how long until the watcher has been told they all left (the clear time).
Each wait lasts `--budget` seconds at most: a run that does not finish reports the joins/s it made.
Rounds are interleaved (plain, presence, for each size and source) so a busy machine slows each alike.

`--src DIR` serves another source tree than this one's; `--compare-src DIR` serves one more, measured
alike (e.g. `git archive main src | tar -x -C DIR`, then `DIR/src`), for before/after figures from
one sitting. `--profile DIR` records the server with py-spy (the `bench` extra) for the first
`--profile-seconds` of the presence join phase of the first round, and prints the functions where
the most samples were taken. `--quick` (300 clients, one round, 20 s budget) stays under a minute:
the test run calls it (tests/bench/test_presence_scale_quick.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serving import free_port, wait_for_port  # noqa: E402 - after the path is set

APP = "bench/apps/tidings_presence.py:app"
CLIENT = ROOT / "bench" / "node" / "presence_client.mjs"
CONCURRENCY = 100  # sockets joining at once


def start(src: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "tidings", "run", APP, "--port", str(port), "--log-level", "error"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    wait_for_port(port, 20, process)
    return process, port


def profiler(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds``, as collapsed stacks (one line per stack: frames, count)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200"]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(collapsed: Path, count: int = 10) -> list[tuple[str, float]]:
    """The frames with the most samples of their own (the innermost of a stack), as shares of all."""
    own: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack:
            function, _, where = stack.split(";")[-1].partition(" (")
            own[f"{function} ({where.partition(':')[0]})"] += int(samples)  # the function, not the line
    total = sum(own.values()) or 1
    return [(frame, samples / total) for frame, samples in own.most_common(count)]


def measure(
    src: str, clients: int, presence: bool, budget: float, profile: Path | None, profile_seconds: int
) -> dict[str, Any]:
    process, port = start(src)
    channel = f"{'pres' if presence else 'plain'}-{uuid.uuid4().hex[:8]}"
    command = ["node", str(CLIENT), f"http://127.0.0.1:{port}", str(clients), channel, str(budget)]
    command += [str(CONCURRENCY), "presence" if presence else "plain"]
    spy = profiler(process.pid, profile_seconds, profile) if profile is not None else None
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=3 * budget + 30)
        if run.returncode != 0:
            raise RuntimeError(f"the client failed: {run.stderr.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        if spy is not None:
            spy.wait(profile_seconds + 30)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # still busy with what the old design queued
            process.kill()
            process.wait(10)
    if profile is not None and profile.exists():
        result["top_frames"] = top_frames(profile)
    return result


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    figures = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(figures) if figures else None


def summary(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, runs in results.items():
        source, clients, kind = name.split("|")
        rows.append(
            {
                "source": source,
                "clients": int(clients),
                "channel": kind,
                "joins_per_second": median(runs, "joins_per_second"),
                "all_joins": [run["joins_per_second"] for run in runs],
                "told_all_here_seconds": median(runs, "told_all_here_seconds"),
                "clear_seconds": median(runs, "clear_seconds"),
                "all_clears": [run.get("clear_seconds") for run in runs],
                "finished": sum(not run.get("timed_out") for run in runs),
                "rounds": len(runs),
                "watcher_notices": median(runs, "watcher_notices"),
                # Events the members got in all (a count, not a time: the same on a busy machine).
                "member_frames": median(runs, "member_frames"),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'source':10} {'clients':>7} {'channel':8} {'joins/s':>8} {'all here':>9} {'clear s':>8}"
        f" {'done':>5}  all"
    )
    for row in rows:
        here = row["told_all_here_seconds"]
        clear = row["clear_seconds"]
        print(
            f"{row['source']:10} {row['clients']:>7} {row['channel']:8} {row['joins_per_second'] or 0:>8.0f}"
            f" {here if here is not None else '-':>9} {clear if clear is not None else '-':>8}"
            f" {row['finished']}/{row['rounds']}  {row['all_joins']} {row['all_clears']}"
        )


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({row["clients"] for row in rows})
    sources = list(dict.fromkeys(row["source"] for row in rows))
    figure, (joins, clears) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / (2 * len(sources))
    for index, (source, kind) in enumerate((s, k) for s in sources for k in ("plain", "presence")):
        figures = [
            next(
                (
                    r["joins_per_second"] or 0
                    for r in rows
                    if (r["source"], r["clients"], r["channel"]) == (source, n, kind)
                ),
                0,
            )
            for n in sizes
        ]
        joins.bar([i + index * width for i in range(len(sizes))], figures, width, label=f"{source}, {kind}")
    joins.set_xticks(
        [i + width * (2 * len(sources) - 1) / 2 for i in range(len(sizes))], [f"{n:,}" for n in sizes]
    )
    joins.set_ylabel("joins/s (connect + subscribe)")
    joins.set_xlabel("members")
    joins.legend(fontsize=8)
    joins.set_title("joins per second")
    width = 0.8 / len(sources)
    for index, source in enumerate(sources):
        figures = [
            next(
                (
                    r["clear_seconds"] or 0
                    for r in rows
                    if (r["source"], r["clients"], r["channel"]) == (source, n, "presence")
                ),
                0,
            )
            for n in sizes
        ]
        places = [i + index * width for i in range(len(sizes))]
        clears.bar(places, figures, width, label=source)
        for place, value in zip(places, figures, strict=True):
            if not value:
                clears.text(place, 0.05, "not in\nthe budget", ha="center", va="bottom", fontsize=7)
    clears.set_xticks(
        [i + width * (len(sources) - 1) / 2 for i in range(len(sizes))], [f"{n:,}" for n in sizes]
    )
    clears.set_ylabel("seconds")
    clears.set_xlabel("members")
    clears.set_title("mass disconnect: until a watcher is told all left")
    clears.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[3000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds each wait lasts at most")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the source tree measured (this one's)")
    parser.add_argument("--label", default="this", help="its name in the table and the chart")
    parser.add_argument("--compare-src", metavar="DIR", help="another source tree, measured alike")
    parser.add_argument("--compare-label", default="compared")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="py-spy the presence joins, round 1")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="300 clients, one round, 20 s budget")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="draw them here (PNG)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.rounds, args.budget = [300], 1, 20.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * max(args.clients) + 4096)), hard))

    sources = [(args.label, args.src)]
    if args.compare_src:
        sources.insert(0, (args.compare_label, args.compare_src))
    results: dict[str, list[dict[str, Any]]] = {}
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    for round_ in range(args.rounds):
        for clients in args.clients:
            for source, src in sources:
                for presence in (False, True):
                    profile = None
                    if args.profile is not None and presence and round_ == 0:
                        profile = args.profile / f"{source}-{clients}.txt"
                    run = measure(src, clients, presence, args.budget, profile, args.profile_seconds)
                    name = f"{source}|{clients}|{'presence' if presence else 'plain'}"
                    results.setdefault(name, []).append(run)
                    print(name, json.dumps({k: v for k, v in run.items() if k != "top_frames"}), flush=True)
                    for frame, share in run.get("top_frames", []):
                        print(f"    {share:6.1%}  {frame}")
    rows = summary(results)
    print_table(rows)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "runs": results}, indent=1))
    if args.chart is not None:
        chart(rows, args.chart)


if __name__ == "__main__":
    main()
