#!/usr/bin/env bash
# Set up everything the tests need (Python venv and extras, the Node peers), lint, then run pytest.
# Usage: ./test.sh [pytest arguments]. Safe to run again: installs are incremental.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
(cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
.venv/bin/ruff check src tests examples bench
.venv/bin/ruff format --check src tests examples bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
