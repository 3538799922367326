"""./run.sh installs into .venv only when it must: the first time, and when pyproject.toml changed.

Run in a copy of the checkout with a fresh .venv, as a new user's first start and the starts after it.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.peers import package_index
from tests.serving import ROOT, background, free_port, outside_environment

INSTALLING = "run.sh: installing tidings[demo] into .venv"

pytestmark = pytest.mark.timeout(300)


def start(checkout: Path) -> tuple[str, int]:
    """Run ./run.sh until the demo's page answers; what it printed, and tidings' dist-info's inode
    (pip installing tidings again writes a new one)."""
    port = free_port()
    log = checkout / f"run-{port}.log"
    command = ["./run.sh", "--port", str(port)]
    with (
        background(command, port, checkout, outside_environment(), log, timeout=180),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page,
    ):
        assert page.status == 200
        assert b"tidings chat" in page.read()  # the demo's page
    (dist_info,) = (checkout / ".venv").glob("lib/python*/site-packages/tidings-*.dist-info")
    return log.read_text(), dist_info.stat().st_ino


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What run.sh installs from, copied without a .venv."""
    package_index()
    copy = tmp_path / "tidings"
    copy.mkdir()
    for name in ("run.sh", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_run_sh_installs_once_and_again_when_pyproject_changes(checkout: Path) -> None:
    printed, installed = start(checkout)
    assert INSTALLING in printed

    printed, again = start(checkout)
    assert again == installed  # pip did not run: tidings' install is still the first one
    assert INSTALLING not in printed

    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# a change\n")
    printed, changed = start(checkout)
    assert INSTALLING in printed
    assert changed != installed
