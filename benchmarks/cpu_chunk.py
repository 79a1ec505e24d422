"""CPU benchmark: the PyTorch chunk back end against the step-by-step op, in the same run.

B=1, H=4, K=V=64, fp32, T from 512 to 8192; forward and forward+backward. Each repeat times the two
ops back to back on the same inputs, so that load on the machine hits both alike; the ratio reported
is median(naive) / median(chunk). Memory: the bytes autograd keeps for the backward pass (counted with
saved-tensor hooks), the part of a training step's memory that grows with T.

    python benchmarks/cpu_chunk.py --out benchmarks/results/cpu_chunk.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from tqdm import tqdm

from vla.ops import chunk_vla, naive_recurrent_vla


def make_inputs(T, B=1, H=4, K=64, V=64, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, u = (torch.randn(B, T, H, K, generator=g) for _ in range(3))
    v = torch.randn(B, T, H, V, generator=g)
    u = u / u.norm(dim=-1, keepdim=True) / K ** 0.5
    return [x.requires_grad_(requires_grad) for x in (q, k, v, u)]


def run_once(fn, xs, backward):
    t0 = time.perf_counter()
    if backward:
        o, _ = fn(*xs)
        o.backward(torch.ones_like(o))
    else:
        with torch.no_grad():
            fn(*xs)
    return time.perf_counter() - t0


def saved_bytes(fn, xs):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*xs)
    return total[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-max-T", type=int, default=8192, help="largest T for the naive op (forward)")
    ap.add_argument("--naive-bwd-max-T", type=int, default=4096, help="largest T for the naive op (fwd+bwd)")
    ap.add_argument("--out", default="benchmarks/results/cpu_chunk.json")
    args = ap.parse_args()

    naive = naive_recurrent_vla
    chunk = lambda *xs: chunk_vla(*xs, chunk_size=64)  # noqa: E731
    rows = []
    jobs = [(T, bwd) for T in args.T for bwd in (False, True)]
    for T, bwd in tqdm(jobs, desc="cpu_chunk"):
        xs = make_inputs(T, requires_grad=bwd)
        with_naive = T <= (args.naive_bwd_max_T if bwd else args.naive_max_T)
        run_once(chunk, xs, bwd)  # warm-up
        t_chunk, t_naive = [], []
        for _ in range(args.repeats):
            t_chunk.append(run_once(chunk, xs, bwd))
            if with_naive:
                t_naive.append(run_once(naive, xs, bwd))
        row = {"T": T, "mode": "fwd+bwd" if bwd else "fwd", "chunk_s": t_chunk, "chunk_median_s": statistics.median(t_chunk)}
        if with_naive:
            row["naive_s"] = t_naive
            row["naive_median_s"] = statistics.median(t_naive)
            row["speedup_chunk_over_naive"] = row["naive_median_s"] / row["chunk_median_s"]
        if bwd:
            row["chunk_saved_bytes"] = saved_bytes(chunk, xs)
            if with_naive:
                row["naive_saved_bytes"] = saved_bytes(naive, xs)
        rows.append(row)
        tqdm.write(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}))

    result = {
        "benchmark": "cpu_chunk",
        "shape": {"B": 1, "H": 4, "K": 64, "V": 64, "dtype": "float32", "chunk_size": 64},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.out)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    for r in rows:
        print(f"T={r['T']:5d} {r['mode']:8s} chunk {r['chunk_median_s']*1e3:9.1f} ms"
              + (f"  naive {r['naive_median_s']*1e3:9.1f} ms  x{r['speedup_chunk_over_naive']:.1f}" if "naive_median_s" in r else "")
              + (f"  saved {r['chunk_saved_bytes'] / r['T']:.0f} B/token" if "chunk_saved_bytes" in r else ""))


if __name__ == "__main__":
    main()
