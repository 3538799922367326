"""Fuzz the decoders of hostile input for a long time: a million inputs per decoder by default.

Run from the repository root: ``.venv/bin/python -m bench.fuzz [--inputs 1000000] [--targets a,b]``.
The targets, their seeds and the checks are in tests/protocol/fuzzing.py (the test run runs each one
for a few thousand inputs). The engine is atheris (coverage-guided libFuzzer, from the ``bench``
extra; each target in a process of its own) where it is installed, else the plain mutation loop of
fuzzing.py. Prints, per target, the inputs run, the time and inputs per CPU second; saves each
finding's input in ``--findings`` and exits 1 if there was one. ``--replay FILE...`` runs saved
inputs again.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.protocol.fuzzing import Report

# tidings is imported only through tests.protocol.fuzzing, and only once atheris, in its process, is
# ready to instrument it: see _atheris_child.
FINDINGS = ROOT / "bench" / "results" / "fuzz"
ATHERIS_TIMEOUT_SECONDS = 10  # libFuzzer's limit for one input: it stops the run and saves the input
ATHERIS_RSS_LIMIT_MB = 2048


def main(argv: list[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    if args.atheris_child:
        return _atheris_child(args.atheris_child, args.libfuzzer_args)
    from tests.protocol.fuzzing import TARGETS

    names = args.targets.split(",") if args.targets else list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; the targets: {', '.join(TARGETS)}")
    if args.replay:
        return _replay(args.replay, names if args.targets else None)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"
    print(f"engine: {engine}, {args.inputs:,} inputs per target, seed {args.seed}")
    args.findings.mkdir(parents=True, exist_ok=True)
    run = _run_atheris if engine == "atheris" else _run_mutate
    print(f"{'target':22} {'inputs':>11} {'wall s':>8} {'CPU s':>8} {'inputs/s':>9}  findings")
    totals = [0, 0.0, 0.0, 0]
    for name in names:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        inputs, findings, note = run(name, args)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        rate = inputs / max(cpu, 1e-9)
        line = f"{name:22} {inputs:>11,} {wall:8.1f} {cpu:8.1f} {rate:>9,.0f}  {findings:8}  {note}"
        print(line, flush=True)
        totals = [totals[0] + inputs, totals[1] + wall, totals[2] + cpu, totals[3] + findings]
    total_inputs, total_wall, total_cpu, total_findings = totals
    print(f"{'all':22} {total_inputs:>11,} {total_wall:8.1f} {total_cpu:8.1f} {'':9}  {total_findings:8}")
    if total_findings:
        print(f"inputs of the findings: {args.findings}")
    return 1 if total_findings else 0


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (atheris runs in one). Inputs/s are per CPU
    second: on a shared machine the wall time says as much about the neighbours."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", help="comma-separated target names (default: all)")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the engine")
    parser.add_argument("--findings", type=Path, default=FINDINGS, help="where inputs that fail are saved")
    parser.add_argument(
        "--corpus", type=Path, help="atheris: keep the corpus it grows in DIR/<target> (default: thrown away)"
    )
    parser.add_argument("--replay", nargs="+", type=Path, metavar="FILE", help="run saved inputs again")
    parser.add_argument("--atheris-child", help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer_args", nargs="*", help=argparse.SUPPRESS)
    return parser


# -- the mutation loop, in this process ------------------------------------------------------------------


def _run_mutate(name: str, args: argparse.Namespace) -> tuple[int, int, str]:
    from tests.protocol.fuzzing import TARGETS, fuzz, input_name

    def progress(report: Report) -> None:
        print(f"  {name}: {report.inputs:,} inputs, {report.seconds:.1f} s", file=sys.stderr, flush=True)

    report = fuzz(TARGETS[name], args.inputs, args.seed, progress)
    for data, trace in report.findings:
        path = args.findings / (input_name(name, data) + ".bin")
        path.write_bytes(data)
        path.with_suffix(".txt").write_text(trace)
        print(f"FINDING in {name}: input {data[:200]!r} saved to {path}\n{trace}", flush=True)
    note = f"{report.accepted / max(report.inputs, 1):.0%} decoded"
    return report.inputs, len(report.findings), note


# -- atheris, one process per target --------------------------------------------------------------------


def _run_atheris(name: str, args: argparse.Namespace) -> tuple[int, int, str]:
    from tests.protocol.fuzzing import MAX_INPUT, TARGETS, input_name

    target = TARGETS[name]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as scratch:
        corpus = (args.corpus / name) if args.corpus else Path(scratch) / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for seed in target.seeds():
            (corpus / input_name("seed", seed)).write_bytes(seed)
        dictionary = Path(scratch) / "dictionary"
        dictionary.write_text("".join(f'"{_escape(token)}"\n' for token in target.dictionary))
        log = Path(scratch) / "log"
        command = [
            sys.executable,
            "-m",
            "bench.fuzz",
            "--atheris-child",
            name,
            "--",
            f"-runs={args.inputs}",
            f"-seed={args.seed}",
            f"-max_len={MAX_INPUT}",
            f"-timeout={ATHERIS_TIMEOUT_SECONDS}",
            f"-rss_limit_mb={ATHERIS_RSS_LIMIT_MB}",
            f"-artifact_prefix={args.findings}/{name}-",
            f"-dict={dictionary}",
            "-print_final_stats=1",
            str(corpus),
        ]
        with log.open("wb") as output:
            status = subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT).returncode
        text = log.read_text(errors="replace")
    runs = re.search(r"stat::number_of_executed_units: (\d+)", text)
    inputs = int(runs.group(1)) if runs else 0
    progress = re.findall(r"cov: (\d+) ft: \d+ corp: (\d+)", text)
    note = f"coverage {progress[-1][0]} edges, corpus {progress[-1][1]}" if progress else ""
    if status == 0:
        return inputs, 0, note
    artifact = re.search(r"Test unit written to (\S+)", text)
    saved = f"input saved to {artifact.group(1)}" if artifact else "no input saved"
    report = text[text.find("Traceback") :] if "Traceback" in text else text[-4000:]
    print(f"FINDING in {name} (exit status {status}), {saved}; libFuzzer's report:\n{report}", flush=True)
    return inputs, 1, note


def _escape(token: bytes) -> str:
    """A token for a libFuzzer dictionary: printable ASCII as is, the rest as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)


def _atheris_child(name: str, libfuzzer_args: list[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["tidings"]):
        from tests.protocol.fuzzing import MEMORY_SAMPLE, TARGETS, Finding, check_input
    # The Python code of the standard library that the decoders hand input to (imported long before).
    # Not all of it: atheris.instrument_all() makes every input 25 times slower.
    for function in (urllib.parse.parse_qs, urllib.parse.parse_qsl, urllib.parse.unquote):
        atheris.instrument_func(function)
    target = TARGETS[name]
    count = 0

    def one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            check_input(target, data, measure_memory=count % MEMORY_SAMPLE == 0)
        except Finding:
            traceback.print_exc()  # with the cause, which atheris leaves out
            raise

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()  # exits the process
    return 0


# -- replaying saved inputs -----------------------------------------------------------------------------


def _replay(paths: list[Path], names: list[str] | None) -> int:
    """Run each file through the target its name starts with (or through ``names``)."""
    from tests.protocol.fuzzing import TARGETS, Finding, check_input

    failed = 0
    for path in paths:
        data = path.read_bytes()
        for name in names or [path.name.split("-")[0]]:
            try:
                accepted = check_input(TARGETS[name], data, measure_memory=True)
            except Finding as finding:
                failed += 1
                print(f"{path} {name}: FINDING {finding}", flush=True)
                if finding.__cause__ is not None:
                    traceback.print_exception(finding.__cause__)
            else:
                print(f"{path} {name}: {'decoded' if accepted else 'refused'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
