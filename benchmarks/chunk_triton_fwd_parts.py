"""The forward of the Triton chunk back end per kernel (torch.profiler) with the A chain and the write directions
in one launch (OVERLAP_CHAIN=1) and apart (0), at B = 4 and T = 8k, 16k, and B = 1, T = 16k (H = 16, K = V = 64,
bf16): which of the two bounds the fused launch. Run on the GPU:

    python benchmarks/chunk_triton_fwd_parts.py OUT_DIR      (writes OUT_DIR/chunk_triton_fwd_parts.json)
"""
import json, os, sys
import torch
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import chunk_triton_dev as dev
res = {}
for (Bn, T) in ((4, 8192), (4, 16384), (1, 16384)):
    xs = dev.inputs(Bn, T, 16, seed=T)
    for ov in (1, 0):
        with dev.build_settings({"OVERLAP_CHAIN": ov}), torch.no_grad():
            for _ in range(3):
                dev.run_triton(*xs)
            kern = {k[:40]: round(t, 4) for k, t in dev.kernel_ms(lambda: dev.run_triton(*xs), 5).items() if t > 0.01}
            ms = dev.bench(dev.f_vla, xs, False)[0]
        key = f"B{Bn}_T{T}_overlap{ov}"
        res[key] = {"fwd_ms": ms, "kernels": kern}
        print(key, json.dumps(res[key]), flush=True)
dev.write_json(os.path.join(sys.argv[1], "chunk_triton_fwd_parts.json"), res)
