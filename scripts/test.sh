#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), then run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
exec .venv/bin/python -m pytest -q tests "$@"
