#!/usr/bin/env bash
# Set everything up and run the tests: Python packages, Debian's Chromium for the browser
# tests, PostgreSQL server binaries for the store tests (the tests start their own
# throw-away cluster on loopback) and Debian's nginx for the proxy tests (they run their own
# nginx on loopback, without root). Extra arguments go to pytest, e.g.
#   ./scripts/test.sh -m "not browser and not heavy"     # the quick local run
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1 && as_root apt-get install -y -qq "$@" >/dev/null; }
}
have_pg() { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_nginx() { { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } && command -v openssl >/dev/null; }

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium for the browser tests (about 2 minutes)"
  apt_install chromium || echo "!! could not install chromium: browser tests will be skipped" >&2
fi
if ! have_pg; then
  echo "==> installing PostgreSQL server binaries for the store tests"
  apt_install postgresql || echo "!! could not install postgresql: PostgreSQL tests will be skipped" >&2
fi
if ! have_nginx; then
  echo "==> installing Debian's nginx for the proxy tests"
  apt_install nginx openssl || echo "!! could not install nginx: proxy tests will be skipped" >&2
fi
exec .venv/bin/python -m pytest "$@"
