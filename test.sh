#!/usr/bin/env bash
# Set up what the tests need, lint, then run pytest. Usage: ./test.sh [pytest arguments] (with
# `--collect-only -q`: set up only). Safe to run again: installs are incremental.
# The peers (Debian packages, npm packages: tests/setup_peers.sh) are installed where they can be, and
# one that cannot be skips its tests (fails the run under TIDINGS_REQUIRE_ALL=1). The venv with the
# test extras, ruff, mypy and lint-imports are required: any failure there ends the run.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}

tests/setup_peers.sh
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
.venv/bin/ruff check src tests examples bench
.venv/bin/ruff format --check src tests examples bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache --no-logo  # the layers contract of pyproject.toml
exec .venv/bin/python -m pytest "$@"
