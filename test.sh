#!/usr/bin/env bash
# Set up everything the tests need (Debian's chromium and nginx, the Python venv and extras, the Node
# peers), lint, then run pytest.
# Usage: ./test.sh [pytest arguments]. Safe to run again: installs are incremental.
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
