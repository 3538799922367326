#!/usr/bin/env bash
# Set up everything the tests need (Debian's chromium and nginx, the Python venv and extras, the Node
# peers), lint, then run pytest.
# Usage: ./test.sh [pytest arguments]. Safe to run again: installs are incremental.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}

# The browser tests drive Debian's chromium with Playwright (no browser download); the deployment
# tests put nginx in front of tidings. Installed once, from Debian's archive.
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/sbin/nginx ] || packages+=(nginx)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  apt_install() { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${packages[@]}"; }
  apt_install || { $sudo apt-get update -q && apt_install; }
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
(cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
.venv/bin/ruff check src tests examples bench
.venv/bin/ruff format --check src tests examples bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache --no-logo  # the layers contract of pyproject.toml
exec .venv/bin/python -m pytest "$@"
