#!/usr/bin/env bash
# Installs what magento-edge needs on a fresh Debian machine into ./.venv.
#   scripts/setup.sh            runtime only (the demo)
#   scripts/setup.sh test       plus test tools and redis-server
#   scripts/setup.sh bench      plus nginx, wrk, valgrind and the benchmark packages
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-run}"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

case "$want" in
  test) apt_install redis-server ;;
  bench) apt_install redis-server nginx-light wrk valgrind ;;
esac
# Debian starts the packaged services on install; nothing here uses them (tests and
# benchmarks start their own on free loopback ports).

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
case "$want" in
  run) .venv/bin/pip install -q -e . ;;
  test) .venv/bin/pip install -q -e '.[test]' ;;
  bench) .venv/bin/pip install -q -e '.[test,bench]' ;;
  *) echo "usage: $0 [run|test|bench]" >&2; exit 2 ;;
esac
