#!/usr/bin/env bash
# Make .venv with the pinned requirements, tdmpc_lib installed in editable mode (pyproject.toml),
# and the OSMesa library MuJoCo renders offscreen with. With --browser, also Debian's chromium,
# which the JupyterLab browser test drives through Playwright (Playwright's own browser download
# needs the internet; the system browser does not).
# Idempotent: re-running is quick when requirements.txt and pyproject.toml have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
browser=0
for arg in "$@"; do case "$arg" in --browser) browser=1 ;; *) echo "setup.sh: unknown option $arg (use --browser)" >&2; exit 2 ;; esac; done

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_packages=()
ldconfig -p 2>/dev/null | grep -q libOSMesa || apt_packages+=(libosmesa6 libgl1 libegl1)
if [ "$browser" = 1 ] && ! command -v chromium >/dev/null; then apt_packages+=(chromium); fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing ${apt_packages[*]} (apt)..."
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # The package itself, editable: `import tdmpc_lib` works from any folder (notebooks/, a kernel
  # started anywhere); the pinned requirements above are already its dependencies.
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
