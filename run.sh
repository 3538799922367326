#!/usr/bin/env bash
# Set up a venv with tidings and serve an app: ./run.sh [target] [tidings run options].
# With no target it serves examples/echo.py:app on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
target=${1:-examples/echo.py:app}
shift || true
exec .venv/bin/tidings run "$target" "$@"
