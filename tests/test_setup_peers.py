"""tests/setup_peers.sh, the peer steps of test.sh, run on a PATH of fakes: on a machine without Node,
npm, apt-get or sudo it says in one line what it could not install and goes on; under
TIDINGS_REQUIRE_ALL=1 it stops at that line with status 1. It never aborts halfway otherwise.

Only the script's own tools (bash, dirname, id) and the fakes are on PATH, so redis-server and openssl
are always missing and the Debian step always runs; the fake npm records its calls and touches nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serving import ROOT

SCRIPT = ROOT / "tests" / "setup_peers.sh"
TOOLS = ("bash", "dirname", "id")
SAID = "tests/setup_peers.sh: "
NOT_INSTALLED = SAID + "no node or npm on PATH: the npm packages of {} not installed; {}"
NO_NPM = [
    NOT_INSTALLED.format("tests/node", "the Node client tests skip"),
    NOT_INSTALLED.format("bench/node", "the benchmark smoke test skips"),
]
REQUIRED = SAID + "TIDINGS_REQUIRE_ALL=1: every peer is required"


def setup_peers(tmp_path: Path, require_all: bool = False, **fakes: str) -> subprocess.CompletedProcess[str]:
    """Runs the script with only TOOLS and ``fakes`` (command name: sh body) on PATH."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in TOOLS:
        if tool not in fakes:
            (path / tool).symlink_to(str(shutil.which(tool)))
    for name, body in fakes.items():
        (path / name).write_text(f"#!/bin/sh\n{body}\n")
        (path / name).chmod(0o755)
    env = {"PATH": str(path), "HOME": str(tmp_path)}
    if require_all:
        env["TIDINGS_REQUIRE_ALL"] = "1"
    return subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def said(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith(SAID)]


def test_goes_on_without_apt_get_node_or_npm(tmp_path: Path) -> None:
    run = setup_peers(tmp_path)
    assert run.returncode == 0, run.stderr
    debian, *npm = said(run)
    assert debian.startswith(SAID + "no apt-get (not Debian?): ") and debian.endswith(
        "openssl redis-server not installed; the tests that need them skip"
    )
    assert npm == NO_NPM


def test_stops_at_the_first_missing_peer_when_all_are_required(tmp_path: Path) -> None:
    run = setup_peers(tmp_path, require_all=True)
    assert run.returncode == 1
    assert said(run)[0].startswith(SAID + "no apt-get (not Debian?): ")
    assert said(run)[1:] == [REQUIRED]


def test_goes_on_when_neither_root_nor_sudo(tmp_path: Path) -> None:
    run = setup_peers(tmp_path, id="echo 1000", **{"apt-get": "exit 1"})
    assert run.returncode == 0, run.stderr
    debian, *npm = said(run)
    assert debian.startswith(SAID + "not root and no sudo: ")
    assert npm == NO_NPM


def test_a_failed_apt_get_is_said_and_gone_past(tmp_path: Path) -> None:
    run = setup_peers(tmp_path, id="echo 0", **{"apt-get": "exit 100"})
    assert run.returncode == 0, run.stderr
    debian, *npm = said(run)
    assert debian.startswith(SAID + "apt-get failed: ")
    assert npm == NO_NPM


@pytest.mark.parametrize("require_all", [False, True])
def test_a_failed_npm_ci_is_said_and_gone_past(tmp_path: Path, require_all: bool) -> None:
    fakes = {"apt-get": "exit 0", "node": "exit 0", "npm": "exit 1"}
    run = setup_peers(tmp_path, require_all, id="echo 0", **fakes)
    failed = [
        SAID + "npm ci failed in tests/node: the Node client tests skip",
        SAID + "npm ci failed in bench/node: the benchmark smoke test skips",
    ]
    if require_all:
        assert (run.returncode, said(run)) == (1, [failed[0], REQUIRED])
    else:
        assert (run.returncode, said(run)) == (0, failed), run.stderr


def test_installs_what_is_missing_and_says_nothing(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fakes = {name: f'echo "{name} $PWD $*" >> {calls}' for name in ("apt-get", "npm")}
    run = setup_peers(tmp_path, require_all=True, id="echo 0", node="exit 0", **fakes)
    assert (run.returncode, said(run)) == (0, []), run.stderr
    apt, *npm = calls.read_text().splitlines()
    command, packages = apt.split(" -q ")
    assert command == f"apt-get {ROOT} install -y"
    assert {"openssl", "redis-server"} <= set(packages.split())
    npm_ci = "ci --no-audit --no-fund --loglevel=error"
    assert npm == [f"npm {ROOT}/tests/node {npm_ci}", f"npm {ROOT}/bench/node {npm_ci}"]
