#!/usr/bin/env bash
# Fetch the test peers that test.sh installs: Debian's chromium and nginx, the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

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

(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
(cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
