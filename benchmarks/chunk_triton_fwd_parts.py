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
from torch.profiler import ProfilerActivity, profile as tprof
res = {}
for (Bn, T) in ((4, 8192), (4, 16384), (1, 16384)):
    xs = dev.inputs(Bn, T, 16, seed=T)
    for ov in (1, 0):
        with dev.build_settings({"OVERLAP_CHAIN": ov}), torch.no_grad():
            for _ in range(3):
                dev.run_triton(*xs)
            torch.cuda.synchronize()
            with tprof(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    dev.run_triton(*xs)
                torch.cuda.synchronize()
            kern = {}
            for e in prof.key_averages():
                t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
                if t > 0 and t / 5 / 1e3 > 0.01:
                    kern[e.key[:40]] = round(t / 5 / 1e3, 4)
            ms = dev.bench(dev.f_vla, xs, False)[0]
        key = f"B{Bn}_T{T}_overlap{ov}"
        res[key] = {"fwd_ms": ms, "kernels": kern}
        print(key, json.dumps(res[key]), flush=True)
dev.write_json(os.path.join(sys.argv[1], "chunk_triton_fwd_parts.json"), res)
