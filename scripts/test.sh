#!/usr/bin/env bash
# Runs the test suite (CPU; Triton kernels through Triton's interpreter). Creates .venv if needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
