#!/usr/bin/env bash
# Set up a venv with tidings and serve: ./run.sh [target] [tidings run options].
# With no target (or only options) it serves the chat demo, `tidings demo`, on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
if [ $# -eq 0 ] || [[ $1 == -* ]]; then
  exec .venv/bin/tidings demo "$@"
fi
target=$1
shift
exec .venv/bin/tidings run "$target" "$@"
