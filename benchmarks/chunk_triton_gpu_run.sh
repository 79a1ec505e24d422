#!/usr/bin/env bash
# Device calls for issue 6 on an H200, with the shipped build (VLA_* settings from the environment), in two
# parts that each fit one call (at most 10 minutes):
#   checks  the small float64 check (ragged cu_seqlens with offsets, K != V, states, fp32 / bf16 / fp16,
#           chunks of 16 / 32 / 64, V = 128, every output and gradient; pass: within the interpreter tests' bounds,
#           chunk_triton_dev.SMOKE_TOL), the check at T = 16k (bf16, against the fp32 PyTorch chunk
#           form, and determinism), the same with the backward's "sub" form and with CHAIN_SOLVER="cholesky",
#           T = 1M (B = 1, H = 16: finite, and against the fp32 PyTorch chunk form) and the forward at T = 4096
#           per kernel, and the float64 check of K = V = 128 (bf16, chunks of 64, both A chains); about 6 minutes
#   timing  the suite (chunk Triton, flash-linear-attention's chunk_delta_rule, causal SDPA, the sequential
#           loop: same run, same inputs), the build variants side by side (VARIANTS in chunk_triton_dev.py),
#           the per-kernel profile and V = 128, then K = V = 128, against DeltaNet (--wide, --wide-k); about 8
#           minutes. The two parts
#           ran side by side on the two GPUs of one nvidia-h200-x2 call (CUDA_VISIBLE_DEVICES=0 and 1) in 7
#           minutes before the two K = 128 / V = 128 steps were added
# Usage (repository root; for timing, fla importable or its wheel in .whl/, carried): bash benchmarks/chunk_triton_gpu_run.sh OUT checks|timing
set -u
OUT=$1
PART=${2:-checks}
D=benchmarks/chunk_triton_dev.py
if [ "$PART" = checks ]; then
timeout 100 python3 $D --out "$OUT" --smoke 2>&1 | grep -v Warn | grep -E "^\{|^smoke:|Error|error" | tail -4 | cut -c1-420
timeout 90 python3 $D --out "$OUT" --check 2>&1 | grep -E "^\{|determin|Error" | cut -c1-420
# the backward's "sub" form (what heads wider than 64 run; K <= 64 runs the "full" form by default)
mkdir -p "$OUT/sub_form"
VLA_BWD_PHASE1_FORM=sub timeout 90 python3 $D --out "$OUT/sub_form" --check 2>&1 | grep -E "^\{|determin|Error" | cut -c1-420
# the Cholesky chain (what CHAIN_SOLVER="auto" falls back to when its bound is over NEWTON_MAX_BOUND) at real size
mkdir -p "$OUT/cholesky"
VLA_CHAIN_SOLVER=cholesky timeout 90 python3 $D --out "$OUT/cholesky" --check 2>&1 | grep -E "^\{|determin|Error" | cut -c1-420
timeout 75 python3 $D --out "$OUT" --million 2>&1 | grep -E "^\{|Error" | cut -c1-600
# heads wider than 64 (K = V = 128), both A chains
timeout 120 python3 $D --out "$OUT" --smoke-wide-k 2>&1 | grep -v Warn | grep -E "^smoke:|Error|error" | tail -2 | cut -c1-420
# the forward at T = 4096 per kernel, both chains (where the 500x goal is measured)
timeout 60 python3 $D --out "$OUT" --profile-fwd 2>&1 | grep -E "_fwd_ms|layout|Error" | cut -c1-200
elif [ "$PART" = timing ]; then
# flash-linear-attention for DeltaNet's rows: the wheel carried in .whl/ (the device cannot reach the network); a
# suite without it records only an error in DeltaNet's rows (chunk_triton_v9e_suite_without_fla.json)
if ! python3 -c "import fla" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import fla" 2>/dev/null || echo "flash-linear-attention is not importable: no DeltaNet rows" >&2
(cd benchmarks && timeout 240 python3 suite.py --ops chunk_triton,fla_delta,sdpa,naive --T 4096,8192,16384,32768,65536 \
   --no-decode --out "$OUT/suite_h200_chunk.json" 2>&1 | grep -v Warn | tail -3 | cut -c1-300)
timeout 200 python3 $D --out "$OUT" --variants 2>&1 | grep -E "^\{|Error" | cut -c1-420
timeout 40 python3 $D --out "$OUT" --profile 2>&1 | grep -E "_chain|_bwd|_fwd|Error" | grep -v "{$" | cut -c1-200
timeout 60 python3 $D --out "$OUT" --wide 2>&1 | grep -E "^\{|Error" | cut -c1-200
timeout 120 python3 $D --out "$OUT" --wide-k 2>&1 | grep -E "^\{|Error" | cut -c1-200
else
  echo "usage: bash benchmarks/chunk_triton_gpu_run.sh OUT checks|timing" >&2
  exit 2
fi
