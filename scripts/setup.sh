#!/usr/bin/env bash
# Make .venv with the pinned requirements and the OSMesa library MuJoCo renders offscreen with.
# Idempotent: re-running is quick when requirements.txt has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing libosmesa6 (offscreen MuJoCo rendering)..."
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq libosmesa6 libgl1 libegl1 >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
