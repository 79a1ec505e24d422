#!/usr/bin/env bash
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
(cd benchmarks && timeout 150 python3 suite.py --ops chunk_triton,fla_delta --T 16384,65536 --modes fwdbwd \
   --no-decode --out "$OUT/suite_h200_chunk_memory.json" 2>&1 | grep -v Warn | tail -1 | cut -c1-600)
