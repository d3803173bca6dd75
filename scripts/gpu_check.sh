#!/usr/bin/env bash
# GPU readiness in one command, sized to finish in under 10 minutes on one H100-class GPU.
# On a GPU machine install the CUDA build of the pinned torch into .venv first; without a GPU
# it runs the same checks on the CPU.
#   bash scripts/gpu_check.sh            # the test suite on this machine, then the checks
#   bash scripts/gpu_check.sh --quick    # CPU-sized checks only (what tests/test_gpu_check.py runs)
# The last line printed is one JSON object with every figure. On CUDA the MT30 evaluation steps
# its 300 environments in worker processes (one per core but one, at most 16; --env-workers N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-osmesa}  # egl on a GPU machine is faster for the viewer tests
if [ "${1:-}" != "--quick" ]; then
  .venv/bin/python -m pytest -q tests -x -k "not paper_dryrun" >&2
fi
exec .venv/bin/python benchmarks/gpu_check.py "$@"
