"""The decoders of hostile input under a short fuzz run, and the fuzzing itself (tests/protocol/fuzzing.py).

The long run is ``python -m bench.fuzz`` (a million inputs per decoder, see bench/README.md); here each
decoder gets a few thousand inputs from the mutation engine with a fixed seed, so that a failure can
be run again.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fuzz as fuzz_script
from tests.peers import missing
from tests.protocol import fuzzing
from tests.protocol.fuzzing import TARGETS, Target, fuzz

ROOT = Path(__file__).resolve().parents[2]
INPUTS = 5000


@pytest.mark.parametrize("name", TARGETS)
def test_decoder_decodes_or_raises_its_error(name: str) -> None:
    report = fuzz(TARGETS[name], INPUTS, seed=12)
    assert report.inputs == INPUTS
    assert not report.findings, "\n".join(f"input {data!r}:\n{trace}" for data, trace in report.findings)
    assert 0 < report.accepted < INPUTS  # the seeds still decode, and the mutants reach the errors


# -- the engine finds what it is meant to -------------------------------------------------------------


def _refuses_ff(data: bytes) -> bool:
    if b"\xff" in data:
        raise KeyError("0xff")
    return True


def _allocates(data: bytes) -> bool:
    return len(bytearray(16 * 1024 * 1024)) > 0


def _hangs_on_leading_ff(data: bytes) -> bool:
    while data.startswith(b"\xff"):  # rarer than any 0xff: every hang costs the run the time limit
        pass
    return True


def _refuses_all(data: bytes) -> bool:
    return False


@pytest.mark.parametrize(
    ("run", "finding"),
    [
        (_refuses_ff, "KeyError: '0xff'"),
        (_allocates, "Finding: allocated 16,7"),
        (_hangs_on_leading_ff, "Finding: still running after 0.05 s"),
    ],
)
def test_findings(run: object, finding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if run is _hangs_on_leading_ff:  # found in 0.05 s; the others keep the limit, not to be taken
        monkeypatch.setattr(fuzzing, "SLOW_INPUT_SECONDS", 0.05)  # for hangs on a loaded machine
    report = fuzz(Target("buggy", run, lambda: [b"seed"]), 2000)  # type: ignore[arg-type]
    assert len(report.findings) == 1  # the same bug, found many times, is one finding
    data, trace = report.findings[0]
    assert finding in trace
    if run is not _allocates:
        assert b"\xff" in data


def test_refusals_are_no_findings() -> None:
    report = fuzz(Target("strict", _refuses_all, lambda: [b"seed"]), 2000)
    assert (report.inputs, report.accepted, report.findings) == (2000, 0, [])


# -- the long script -------------------------------------------------------------------------------------


def test_script_saves_a_finding_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(TARGETS, "buggy", Target("buggy", _refuses_ff, lambda: [b"seed"]))
    status = fuzz_script.main(
        ["--engine", "mutate", "--targets", "buggy", "--inputs", "1000", "--findings", str(tmp_path)]
    )
    assert status == 1
    [saved] = tmp_path.glob("buggy-*.bin")
    assert b"\xff" in saved.read_bytes()
    assert "KeyError" in saved.with_suffix(".txt").read_text()
    output = capsys.readouterr().out
    assert "FINDING in buggy" in output
    assert re.search(r"^buggy +1,000 .* 1 ", output, re.MULTILINE), output
    assert fuzz_script.main(["--replay", str(saved)]) == 1


@pytest.mark.parametrize("engine", ["mutate", "atheris"])
def test_script_runs_each_engine(engine: str, tmp_path: Path) -> None:
    if engine == "atheris" and importlib.util.find_spec("atheris") is None:
        missing("atheris", "install the bench extra: pip install -e '.[bench]'")
    targets = "websocket_parser,socketio_decoder"
    command = [sys.executable, "-m", "bench.fuzz", "--engine", engine, "--targets", targets]
    result = subprocess.run(
        [*command, "--inputs", "3000", "--findings", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for target in targets.split(","):
        assert re.search(rf"^{target} +3,000 .* 0 ", result.stdout, re.MULTILINE), result.stdout
    assert list(tmp_path.iterdir()) == []
