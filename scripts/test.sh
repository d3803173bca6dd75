#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), then run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
# The 15 slowest tests are listed before the summary line, to keep the suite's time in view.
exec .venv/bin/python -m pytest -q --durations=15 tests "$@"
