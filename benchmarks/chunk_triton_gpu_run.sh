#!/usr/bin/env bash
# One device call (issue 6), about 8 minutes on an H200: the small float64 check of the shipped build
# (falling back to one tf32 pass in the backward's phase-1 kernels if it faults: each try in its own
# process, since an illegal memory access poisons the CUDA context), the check at T = 16k, the suite
# (VLA chunk Triton, flash-linear-attention's chunk_delta_rule, causal SDPA, the sequential loop:
# same run, same inputs), the build variants side by side and the per-kernel profile.
# Usage (repository root, fla importable): bash benchmarks/chunk_triton_gpu_run.sh OUT
set -u
OUT=$1
D=benchmarks/chunk_triton_dev.py
for prec in "" "tf32"; do
  [ -n "$prec" ] && export VLA_BWD_PHASE1_PRECISION=$prec
  rm -f "$OUT/chunk_triton_smoke.json"
  timeout 110 python3 $D --out "$OUT" --smoke 2>&1 | grep -v Warn | grep -E "^\{|Error|error" | tail -4 | cut -c1-420
  if [ -f "$OUT/chunk_triton_smoke.json" ]; then echo "backward phase-1 precision '${prec:-default}': passed the smoke check" | tee -a "$OUT/chosen.txt"; break; fi
  echo "backward phase-1 precision '${prec:-default}': failed" | tee -a "$OUT/chosen.txt"
done
timeout 100 python3 $D --out "$OUT" --check 2>&1 | grep -E "^\{|determin|Error" | cut -c1-420
(cd benchmarks && timeout 220 python3 suite.py --ops naive,chunk_triton,fla_delta,sdpa --T 4096,8192,16384,32768,65536 \
   --no-decode --out "$OUT/suite_h200_chunk.json" 2>&1 | grep -v Warn | tail -3 | cut -c1-300)
timeout 120 python3 $D --out "$OUT" --variants 2>&1 | grep -E "^\{|Error" | cut -c1-420
timeout 50 python3 $D --out "$OUT" --profile 2>&1 | grep -E "_chain\"|_bwd|_fwd|Error" | grep -v "{$" | cut -c1-200
