#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check proxy magento_standin tests benchmarks
.venv/bin/ruff format --check proxy magento_standin tests benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
