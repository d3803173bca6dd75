#!/usr/bin/env bash
# The study, offline on the CPU: install what it needs (scripts/setup.sh), then execute the
# notebooks with papermill into runs/<profile>/ and draw the figures (runs/<profile>/figures).
# Default profile: mini (about 30 minutes on a 2-core CPU). Rerunning skips finished work.
#   bash scripts/study.sh                       # the mini study
#   bash scripts/study.sh --only 05             # redraw the figures
#   bash scripts/study.sh --profile smoke       # seconds per notebook
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
# mini never downloads: its teacher is a cached hub file or one trained here.
profile=(--profile mini)
for arg in "$@"; do case "$arg" in --profile|--profile=*) profile=() ;; esac; done
exec .venv/bin/python -m tdmpc_lib.study "${profile[@]}" "$@"
