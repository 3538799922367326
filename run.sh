#!/usr/bin/env bash
# Set up a venv with tidings and serve: ./run.sh [target] [tidings run options].
# With no target (or only options) it serves the chat demo, `tidings demo`, on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Install when the venv has no tidings yet or pyproject.toml changed since the last install (its copy
# from then is the stamp): starting again runs no pip. src/ needs none: the install is editable.
stamp=.venv/installed-pyproject.toml
if [ ! -x .venv/bin/tidings ] || ! cmp -s pyproject.toml "$stamp"; then
  echo "run.sh: installing tidings[demo] into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'
  cp pyproject.toml "$stamp"
fi
if [ $# -eq 0 ] || [[ $1 == -* ]]; then
  exec .venv/bin/tidings demo "$@"
fi
target=$1
shift
exec .venv/bin/tidings run "$target" "$@"
