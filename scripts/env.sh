#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs the package into it.
# Sourced by the other scripts; safe to run again (it only installs what is missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import vla, torch, pytest, tqdm, matplotlib" >/dev/null 2>&1 \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.vla-installed" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    # torch first, pinned: on the CPU machines this project is tested on, 2.13.0 is a CPU build
    # that pip finds locally; an unpinned torch would pull a multi-GB CUDA build.
    "$VENV/bin/python" -c "import torch" >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
    touch "$VENV/.vla-installed"
fi
export PATH="$VENV/bin:$PATH"
