"""Shared helpers of the GPU benchmark scripts: environment record, timing, peak memory, JSON."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout without installing
    sys.path.insert(0, str(ROOT))


def env_info() -> dict:
    import triton

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), sm_count=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2 ** 30, 1),
                    l2_mib=round(getattr(p, "L2_cache_size", 0) / 2 ** 20, 1))
    try:
        import fla

        info["fla"] = getattr(fla, "__version__", "?")
    except Exception:  # noqa: BLE001 - optional
        info["fla"] = None
    return info


def sync():
    torch.cuda.synchronize()


def time_gpu(fn, grad_to_none=None, slow_ms: float = 200.0, warm: bool = True) -> dict:
    """Median time of ``fn`` in ms, measured with CUDA events.

    Fast functions go through ``triton.testing.do_bench`` (median; it warms up first and clears the
    L2 cache before every repetition, so repeated runs do not read inputs from cache). Functions
    slower than ``slow_ms`` (the sequential PyTorch loop) are run three times after one warm-up
    call (skipped with ``warm=False`` when the caller has just run ``fn``) and the median is taken.
    """
    import triton.testing

    if warm:
        fn()  # warm-up: compilation, autotuning, allocator
        sync()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    sync()
    est = start.elapsed_time(end)
    if est > slow_ms:
        times = [est]
        for _ in range(2):
            if grad_to_none:
                for x in grad_to_none:
                    x.grad = None
            start.record()
            fn()
            end.record()
            sync()
            times.append(start.elapsed_time(end))
        return {"ms": statistics.median(times), "reps": len(times), "method": "cuda events, median of 3"}
    ms = triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")
    return {"ms": float(ms), "method": "triton do_bench median (L2 cleared per rep)"}


def time_loop(step, n_sets: int, n_steps: int = 200) -> dict:
    """Wall-clock time per call of ``step(i)`` over a loop of back-to-back calls, host overhead included.

    This is what a decoding loop sees: if launching a step costs the host more than the GPU needs to
    run it, the host time is what is measured. ``step(i)`` should use input set ``i % n_sets``
    (several sets so that the state / KV cache is read from device memory, not from L2).
    """
    for i in range(min(n_steps, 20)):  # warm-up
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(n_steps):
        step(i)
    sync()
    return {"ms": (time.perf_counter() - t0) * 1e3 / n_steps, "steps": n_steps,
            "method": "wall clock over a loop of back-to-back steps, rotating input sets"}


def peak_memory(fn) -> dict:
    """Peak device memory allocated during one call of ``fn``, absolute and above what was allocated
    before the call (inputs excluded), in MiB."""
    sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    sync()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_mib": peak / 2 ** 20, "extra_mib": (peak - before) / 2 ** 20}


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def write_json(path, obj) -> pathlib.Path:
    """Write JSON atomically (temporary file in the same folder, then os.replace)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def vla_inputs(B, T, H, K, V, dtype, device="cuda", seed=0):
    """Random q, k, v, u as in tests/helpers.py: u has norm 1/sqrt(K), like the layer's."""
    g = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(B, T, H, K, device=device, generator=g)
    k = torch.randn(B, T, H, K, device=device, generator=g)
    v = torch.randn(B, T, H, V, device=device, generator=g)
    u = torch.randn(B, T, H, K, device=device, generator=g)
    u = u / u.norm(dim=-1, keepdim=True) / K ** 0.5
    return [x.to(dtype) for x in (q, k, v, u)]
