"""The forward through ``vla.ops.chunk_vla`` (its input check included, as the suite times it) at T = 8k and 16k
(B = 4, H = 16, K = V = 64, bf16) on a GPU: the time per call (triton.testing.do_bench), every device kernel
(torch.profiler, ms per call), their sum, and the host's time per call in a loop of calls, to see how much of a
call the device spends waiting for the host.

Usage: python benchmarks/chunk_triton_fwd_host.py OUT_DIR   (writes OUT_DIR/chunk_triton_fwd_host.json atomically)
"""
import json
import os
import sys
import time

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chunk_triton_dev as dev  # noqa: E402
from vla.ops import chunk_vla  # noqa: E402


def main(out):
    res = {"device": torch.cuda.get_device_name(), "settings": dev.tri.settings()}
    for T in (8192, 16384):
        xs = dev.inputs(4, T, 16, seed=T)

        def f():
            return chunk_vla(*xs, backend="triton")
        with torch.no_grad():
            for _ in range(3):
                f()
            torch.cuda.synchronize()
            kern = dev.kernel_ms(f, 10)
            ms = do_bench(f, warmup=5, rep=50)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                f()
            host = (time.perf_counter() - t0) / 20 * 1e3
            torch.cuda.synchronize()
        res[T] = {"fwd_ms": ms, "kernels_ms": kern, "kernel_sum_ms": sum(kern.values()), "host_enqueue_ms": host}
    print(json.dumps(res, indent=1))
    os.makedirs(out, exist_ok=True)
    dev.write_json(os.path.join(out, "chunk_triton_fwd_host.json"), res)


if __name__ == "__main__":
    main(sys.argv[1])
