#!/usr/bin/env bash
# The one documented benchmark command: install what the benchmark needs, then measure
# magento-edge against its peers on this machine in one run. Arguments go to run.py, e.g.
#   bash benchmarks/run.sh            # full run (~20 min on 2 cores) -> benchmarks/results/latest.*
#   bash benchmarks/run.sh --quick    # smoke run (a few minutes)   -> benchmarks/results/quick.*
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bench
exec .venv/bin/python benchmarks/run.py "$@"
