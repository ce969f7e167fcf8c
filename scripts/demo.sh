#!/usr/bin/env bash
# Sets up and runs the demo: the edge on its embedded defaults in front of the bundled
# Magento stand-in. Prints working curl lines; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh run
exec .venv/bin/magento-edge demo "$@"
