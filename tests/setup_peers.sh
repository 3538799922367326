#!/usr/bin/env bash
# The test peers test.sh installs: Debian packages (chromium, nginx, openssl, redis-server) and the
# npm packages of tests/node and bench/node (the README's table lists every peer). A peer it cannot
# install is said in one line and its tests skip (tests/peers.py); under TIDINGS_REQUIRE_ALL=1 the run
# stops at that line.
set -euo pipefail
cd "$(dirname "$0")/.."

without() {
  echo "tests/setup_peers.sh: $1" >&2
  if [ "${TIDINGS_REQUIRE_ALL:-}" = 1 ]; then
    echo "tests/setup_peers.sh: TIDINGS_REQUIRE_ALL=1: every peer is required" >&2
    exit 1
  fi
}

# Each is looked for where its tests look. chromium: the browser tests (Playwright drives it, no
# browser download); nginx and openssl: the deployment test; redis-server: the broker tests' Redis
# servers of their own (where services run, Debian's package also starts the one at 127.0.0.1:6379).
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx)
command -v openssl >/dev/null || packages+=(openssl)
command -v redis-server >/dev/null || packages+=(redis-server)
if [ ${#packages[@]} -gt 0 ]; then
  skipped="${packages[*]} not installed; the tests that need them skip"
  if ! command -v apt-get >/dev/null; then
    without "no apt-get (not Debian?): $skipped"
  elif [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    without "not root and no sudo: $skipped"
  else
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    apt_install() { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${packages[@]}"; }
    apt_install || { $sudo apt-get update -q && apt_install; } || without "apt-get failed: $skipped"
  fi
fi

# The Node peers, at the versions of each package-lock.json.
npm_ci() {  # directory, the tests its packages serve
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    without "no node or npm on PATH: the npm packages of $1 not installed; $2"
  elif ! (cd "$1" && npm ci --no-audit --no-fund --loglevel=error); then
    without "npm ci failed in $1: $2"
  fi
}
npm_ci tests/node "the Node client tests skip"
npm_ci bench/node "the benchmark smoke test skips"
