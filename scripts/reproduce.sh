#!/usr/bin/env bash
# Runs the quick reproduction of the paper's headline results on the CPU. Creates .venv if needed.
# Extra arguments go to `vla reproduce` (default: all, quick preset), e.g.
# `bash scripts/reproduce.sh norm --out outputs/norm` or `bash scripts/reproduce.sh --out /tmp/r`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
if [ "$#" -eq 0 ] || [[ "$1" == -* ]]; then set -- all "$@"; fi   # default: all (preset quick)
exec vla reproduce "$@"
