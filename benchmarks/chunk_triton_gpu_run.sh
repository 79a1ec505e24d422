#!/usr/bin/env bash
# One device call (issue 6): find backward build settings that pass the small float64 check (each try
# in its own process: an illegal memory access poisons the CUDA context), then check at real sizes,
# run the benchmark suite (VLA chunk Triton, flash-linear-attention's chunk_delta_rule, causal SDPA and
# the sequential loop, same run) and profile the kernels.
# Usage: bash benchmarks/chunk_triton_gpu_run.sh OUT
set -u
OUT=$1
D=benchmarks/chunk_triton_dev.py
for prec in "" "tf32"; do
  export VLA_BWD_PHASE1_PRECISION=$prec
  rm -f "$OUT/chunk_triton_smoke.json"
  timeout 110 python3 $D --out "$OUT" --smoke 2>&1 | grep -v Warn | grep -E "^\{|Error|error" | tail -4 | cut -c1-420
  if [ -f "$OUT/chunk_triton_smoke.json" ]; then echo "backward phase-1 precision '${prec:-by dtype}': passed the smoke check" | tee -a "$OUT/chosen.txt"; break; fi
  echo "backward phase-1 precision '${prec:-by dtype}': failed" | tee -a "$OUT/chosen.txt"
done
timeout 110 python3 $D --out "$OUT" --check 2>&1 | grep -E "^\{|determin|Error" | cut -c1-420
(cd benchmarks && timeout 170 python3 suite.py --ops naive,chunk_triton,fla_delta,sdpa --no-decode \
   --out "$OUT/suite_h200_2026-11-29_chunk.json" 2>&1 | grep -v Warn | tail -3 | cut -c1-300)
timeout 60 python3 $D --out "$OUT" --profile 2>&1 | grep -E "_chain\"|_bwd|_fwd|Error" | grep -v "{$" | cut -c1-200
