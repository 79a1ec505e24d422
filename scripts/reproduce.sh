#!/usr/bin/env bash
# Runs the quick reproduction of the paper's headline results on the CPU. Creates .venv if needed.
# Extra arguments go to `vla reproduce`, e.g. `bash scripts/reproduce.sh norm --out outputs/norm`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
if [ "$#" -eq 0 ]; then set -- all --quick; fi
exec vla reproduce "$@"
