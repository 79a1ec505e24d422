"""GPU checks and measurements of the Triton chunk back end of VLA (issue 6); run on the H200.

    python benchmarks/chunk_triton_dev.py --out DIR [--smoke] [--check] [--million] [--variants [--settings JSON]]
           [--time] [--baselines] [--profile] [--profile-fwd] [--precision-groups] [--diagnose] [--tf32]

(the build settings come from the environment, VLA_<name>: vla.ops.vla.triton.chunk.SETTINGS; --tf32 is
VLA_PHASE1_PRECISION=tf32)

--check      outputs and every gradient against the fp32 PyTorch chunk back end at T up to 16k, and
             against the float64 naive loop on a small slice; determinism (bit-identical repeats)
--million    T = 1M tokens (B=1, H=16): NaN/Inf check and the output error against the fp32 PyTorch
             chunk back end
--time       forward and forward+backward time and peak memory at T = 4k..64k (B=4, H=16, K=V=64, bf16)
--baselines  the same for flash-linear-attention's chunk_delta_rule and causal SDPA, and the
             sequential PyTorch loop at T = 4096 (forward)
--profile    time per kernel (torch.profiler) at T = 16k, and registers/spills of every kernel
--smoke      small shapes (ragged cu_seqlens with offsets, K != V, initial and final states, fp32, fp16 and
             bf16), forward and every gradient against the float64 naive loop; meant to run under
             compute-sanitizer, which names the kernel behind an illegal memory access
--precision-groups  which groups of the backward phase-1 products take one tf32 pass (errors at T = 16k
             against the fp32 PyTorch chunk form, time at 16k)
--wide       V = 128 (K = 64): forward and forward+backward time and peak memory at T = 16k (B=4, H=16, bf16),
             against flash-linear-attention's chunk_delta_rule on the same inputs; --wide-k: the same with K = 128
--smoke-wide-k  the smoke's check for K = V = 128 (chunks of 64), with the Newton and the Cholesky chain
--profile-fwd  the forward at T = 4096 per kernel, Cholesky and Newton chains, and the host-side layout
--diagnose   the smoke's cases taken apart by dtype, chunk size and build setting (DIAGNOSE)
--variants   build settings side by side (VARIANTS, or --settings: a JSON list of {setting: value} dicts,
             each against the defaults): output and gradient errors against the float64 loop (T = 512),
             which chain ran, and forward / forward+backward time and peak memory at T = 16k
Writes DIR/chunk_triton_<section>.json (raw numbers, atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import torch
import triton
from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vla.ops.vla import naive as naive_mod  # noqa: E402
from vla.ops.vla.triton import chunk as tri  # noqa: E402

B, H, D = 4, 16, 64
TS = [4096, 8192, 16384, 32768, 65536]
HYPER = dict(lambda0=0.1, period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6)


def write_json(path, obj):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def rel(x, ref):
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def inputs(B_, T, H_, K=D, V=D, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B_, T, H_, K, device="cuda", generator=g) * K ** -0.5 * 4
    k = torch.randn(B_, T, H_, K, device="cuda", generator=g)
    v = torch.randn(B_, T, H_, V, device="cuda", generator=g)
    u = torch.randn(B_, T, H_, K, device="cuda", generator=g)
    u = u / u.norm(dim=-1, keepdim=True) / K ** 0.5
    return [x.to(dtype) for x in (q, k, v, u)]


def run_triton(q, k, v, u, chunk_size=64, final=False, init=None, offsets=None):
    K = q.shape[-1]
    N = q.shape[0]
    return tri.chunk_vla_triton(q, k, v, u, scale=K ** -0.5, initial_state=init or (None, None),
                                output_final_state=final, offsets=offsets if offsets is not None
                                else torch.zeros(N, dtype=torch.int64), cu_seqlens=None,
                                chunk_size=chunk_size, **HYPER)


def run_torch_chunk(q, k, v, u, final=False, chunk_size=64):
    from vla.ops.vla.chunk import chunk_vla
    return chunk_vla(q, k, v, u, scale=q.shape[-1] ** -0.5, output_final_state=final,
                     chunk_size=chunk_size, backend="torch", **HYPER)


def grads_of(fn, xs, do, dS=None, dA=None):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    o, fin = fn(*xs)
    loss = (o.float() * do).sum()
    if dS is not None:
        loss = loss + (fin[0].float() * dS).sum() + (fin[1].float() * dA).sum()
    loss.backward()
    return o.detach(), (None if fin is None else [f.detach() for f in fin]), [x.grad for x in xs]


def check(out):
    res = {"device": torch.cuda.get_device_name(), "cases": [], "settings": tri.settings()}
    names = ["dq", "dk", "dv", "du"]
    # (fp32 inputs are checked by the interpreter tests; here bf16, the dtype the kernels are built for)
    for T, dtype in tqdm([(16384, torch.bfloat16)], desc="check"):
        xs = inputs(2, T, 4, dtype=dtype, seed=T)
        do = torch.randn(2, T, 4, D, device="cuda")
        dS = torch.randn(2, 4, D, D, device="cuda")
        dA = torch.randn(2, 4, D, D, device="cuda") * 1e-2
        o, fin, g = grads_of(lambda *a: run_triton(*a, final=True), xs, do, dS, dA)
        ref_in = [x.float() for x in xs]
        o_r, fin_r, g_r = grads_of(lambda *a: run_torch_chunk(*a, final=True), ref_in, do, dS, dA)
        case = {"T": T, "dtype": str(dtype), "vs": "torch chunk fp32", "o": rel(o, o_r),
                "S": rel(fin[0], fin_r[0]), "A": rel(fin[1], fin_r[1]), "finite": bool(torch.isfinite(o).all()),
                "chain_ran": tri.LAST_CHAIN_SOLVER}
        case.update({n: rel(a, b) for n, a, b in zip(names, g, g_r)})
        res["cases"].append(case)
        print(case, flush=True)
    # float64 naive on a small slice (B=1, H=2, T=512) with initial states and offset
    for dtype in (torch.bfloat16,):
        xs = inputs(1, 512, 2, dtype=dtype, seed=7)
        S0 = torch.randn(1, 2, D, D, device="cuda")
        X = torch.randn(1, 2, D, D, device="cuda")
        A0 = X @ X.mT / D + torch.eye(D, device="cuda")
        do = torch.randn(1, 512, 2, D, device="cuda")
        off = 37
        xs_all = xs + [S0, A0]

        def f_tri(q, k, v, u, S0_, A0_):
            return run_triton(q, k, v, u, final=False, init=(S0_, A0_), offsets=torch.tensor([off]))

        def f_naive(q, k, v, u, S0_, A0_):
            return naive_mod.naive_recurrent_vla(q, k, v, u, scale=D ** -0.5, initial_state=(S0_, A0_),
                                                 offset=off, **HYPER)
        o, _, g = grads_of(f_tri, xs_all, do)
        o_r, _, g_r = grads_of(f_naive, [x.double() for x in xs_all], do.double())
        g_r[5] = 0.5 * (g_r[5] + g_r[5].mT)
        case = {"T": 512, "dtype": str(dtype), "vs": "naive float64 (offset 37, S0, A0)", "o": rel(o, o_r),
                "chain_ran": tri.LAST_CHAIN_SOLVER}
        case.update({n: rel(a, b) for n, a, b in zip(names + ["dS0", "dA0"], g, g_r)})
        res["cases"].append(case)
        print(case, flush=True)
    # determinism: bit-identical outputs and gradients
    xs = inputs(B, 8192, H, seed=3)
    do = torch.randn(B, 8192, H, D, device="cuda")
    runs = [grads_of(lambda *a: run_triton(*a), xs, do) for _ in range(3)]
    same = all(torch.equal(runs[0][0], r[0]) and all(torch.equal(a, b) for a, b in zip(runs[0][2], r[2]))
               for r in runs[1:])
    res["deterministic_T8192_3runs"] = same
    print("deterministic", same, flush=True)
    write_json(os.path.join(out, "chunk_triton_check.json"), res)


def smoke_case(dtype, K, V, C):
    """One small case: ragged cu_seqlens with offsets, initial states, every output and gradient of the
    Triton back end against the float64 loop (relative L2 errors)."""
    from vla.ops.vla.chunk import chunk_vla
    names = ["dq", "dk", "dv", "du", "dS0", "dA0"]
    g = torch.Generator(device="cuda").manual_seed(K + V + C)
    lens = [37, 200, 129]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), device="cuda")
    T, H = sum(lens), 2
    q = torch.randn(1, T, H, K, device="cuda", generator=g) * K ** -0.5
    k = torch.randn(1, T, H, K, device="cuda", generator=g)
    v = torch.randn(1, T, H, V, device="cuda", generator=g)
    u = torch.randn(1, T, H, K, device="cuda", generator=g)
    u = u / u.norm(dim=-1, keepdim=True) / K ** 0.5
    S0 = torch.randn(3, H, K, V, device="cuda", generator=g)
    X = torch.randn(3, H, K, K, device="cuda", generator=g)
    A0 = X @ X.mT / K + torch.eye(K, device="cuda")
    xs = [x.to(dtype) for x in (q, k, v, u)] + [S0, A0]
    do = torch.randn(1, T, H, V, device="cuda", generator=g)
    dS = torch.randn(3, H, K, V, device="cuda", generator=g)
    dA = torch.randn(3, H, K, K, device="cuda", generator=g) * 1e-2
    offs = [5, 64, 100]

    def run(backend, q, k, v, u, S0_, A0_):
        if backend == "naive":
            return naive_mod.naive_recurrent_vla(q, k, v, u, initial_state=(S0_, A0_), output_final_state=True,
                                                 offset=offs, cu_seqlens=cu, **HYPER)
        return chunk_vla(q, k, v, u, initial_state=(S0_, A0_), output_final_state=True, offset=offs,
                         cu_seqlens=cu, chunk_size=C, backend="triton", **HYPER)
    o, fin, gr = grads_of(lambda *a: run("triton", *a), xs, do, dS, dA)
    torch.cuda.synchronize()
    chain_ran = tri.LAST_CHAIN_SOLVER
    o_r, fin_r, gr_r = grads_of(lambda *a: run("naive", *a), [x.double() for x in xs], do.double(),
                                dS.double(), dA.double())
    gr_r[5] = 0.5 * (gr_r[5] + gr_r[5].mT)
    case = {"dtype": str(dtype), "K": K, "V": V, "C": C, "lens": lens, "offsets": offs,
            "chain_ran": chain_ran, "o": rel(o, o_r), "S": rel(fin[0], fin_r[0]), "A": rel(fin[1], fin_r[1])}
    case.update({n: rel(a, b) for n, a, b in zip(names, gr, gr_r)})
    return case


SMOKE_TOL = {"torch.float32": 1e-5, "torch.bfloat16": 4e-2, "torch.float16": 5e-3}


SMOKE_CASES = ((torch.float32, 64, 32, 64, {}), (torch.bfloat16, 32, 64, 32, {}), (torch.float16, 64, 64, 16, {}),
               (torch.bfloat16, 64, 128, 64, {}))
# K above 64 (chunks of 64 only), both A chains
SMOKE_WIDE_K = ((torch.bfloat16, 128, 128, 64, {}), (torch.bfloat16, 128, 128, 64, {"CHAIN_SOLVER": "cholesky"}))


@contextlib.contextmanager
def build_settings(settings):
    """The chunk module's build settings ({name: value}) set for the block, restored after it."""
    saved = {key: getattr(tri, key) for key in settings}
    try:
        for key, val in settings.items():
            setattr(tri, key, val)
        yield
    finally:
        for key, val in saved.items():
            setattr(tri, key, val)


def smoke(out, cases=SMOKE_CASES, name="smoke"):
    res = {"device": torch.cuda.get_device_name(), "cases": [], "settings": tri.settings()}
    for dtype, K, V, C, settings in cases:
        with build_settings(settings):
            case = {**smoke_case(dtype, K, V, C), "settings": settings}
        res["cases"].append(case)
        print(case, flush=True)
    # the verdict, within the interpreter tests' bounds (TOL in tests/ops/test_chunk_triton.py)
    bad = [(c["dtype"], name, err) for c in res["cases"] for name, err in c.items()
           if name in ("o", "S", "A", "dq", "dk", "dv", "du", "dS0", "dA0") and not err < SMOKE_TOL[c["dtype"]]]
    res["passed"] = not bad
    print("smoke:", "passed" if not bad else f"FAILED {bad}", flush=True)
    write_json(os.path.join(out, f"chunk_triton_{name}.json"), res)


F16, B16, F32 = torch.float16, torch.bfloat16, torch.float32
_SUB = {"BWD_PHASE1_FORM": "sub"}  # (the v5 bug was in the "sub" form's kernels, the default form then)
DIAGNOSE = [  # (dtype, K, V, C, settings): the smoke's failing fp16 case (du, dA0 at 2.0) taken apart
    (F16, 64, 64, 16, _SUB), (F16, 64, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0}),
    (B16, 64, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0}), (F32, 64, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0}),
    (F16, 64, 64, 32, _SUB), (F16, 64, 64, 64, _SUB), (B16, 32, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0}),
    (F16, 64, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0, "BWD_PHASE1_PRECISION": "tf32"}),
    (F16, 64, 64, 16, {**_SUB, "BWD_SINGLE_STATIC": 0, "DA_CHAIN_PRECISION": "tf32"}),
    (F32, 64, 32, 16, _SUB), (B16, 32, 64, 16, _SUB),
]


def diagnose(out):
    res = {"device": torch.cuda.get_device_name(), "cases": []}
    for dtype, K, V, C, settings in tqdm(DIAGNOSE, desc="diagnose"):
        try:
            with build_settings(settings):
                case = {"settings": settings, **smoke_case(dtype, K, V, C)}
        except Exception as e:
            case = {"settings": settings, "dtype": str(dtype), "K": K, "V": V, "C": C, "error": repr(e)[:300]}
        res["cases"].append(case)
        print({k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in case.items() if k not in ("lens", "offsets")},
              flush=True)
        write_json(os.path.join(out, "chunk_triton_diagnose.json"), res)


VARIANTS = [dict(), dict(BWD_PHASE1_FORM="sub"), dict(BWD_PHASE1_WARPS=8), dict(CHAIN_SOLVER="cholesky"),
            dict(OVERLAP_CHAIN=0), dict(NEWTON_TOL=1e-9), dict(PHASE1_CHUNK=32),
            dict(PHASE1_PRECISION="tf32x3", CHAIN_PRECISION="tf32x3", BWD_PHASE1_PRECISION="tf32x3")]


def sweep_settings(path, res, settings, measure):
    """For each dict of build settings (attributes of the chunk module): set them (the others at their
    defaults), call measure(case), which adds its numbers to the case dict, and rewrite the JSON at
    ``path`` after each case. Stops at the first exception (an illegal memory access poisons the CUDA
    context); the settings are restored at the end."""
    keys = sorted({k for st in settings for k in st})
    defaults = {k: getattr(tri, k) for k in keys}
    for st in tqdm(settings, desc=os.path.basename(path)):
        with build_settings({**defaults, **st}):
            case = {k: getattr(tri, k) for k in keys}
            try:
                measure(case)
            except Exception as e:
                case["error"] = repr(e)[:300]
                res["cases"].append(case)
                print(case, flush=True)
                break
        res["cases"].append(case)
        print(case, flush=True)
        write_json(path, res)
    write_json(path, res)


def variants(out, settings=None):
    """Build settings side by side (each against the shipped defaults): errors of the output and of
    every gradient against the float64 loop (B=1, T=512, H=2, bf16 inputs), and forward /
    forward+backward time at T = 16k (B=4, H=16)."""
    xs = inputs(1, 512, 2, dtype=torch.bfloat16, seed=13)
    do = torch.randn(1, 512, 2, D, device="cuda")
    o_r, _, g_r = grads_of(lambda *a: naive_mod.naive_recurrent_vla(*a, scale=D ** -0.5, **HYPER),
                           [x.double() for x in xs], do.double())
    big = inputs(B, 16384, H, seed=21)

    def measure(case):
        o, _, g = grads_of(lambda *a: run_triton(*a), xs, do)
        torch.cuda.synchronize()
        case.update({"o": rel(o, o_r)}, **{n: rel(a, b) for n, a, b in zip(["dq", "dk", "dv", "du"], g, g_r)})
        case["chain_ran"] = tri.LAST_CHAIN_SOLVER
        case["fwd_ms_T16k"] = bench(f_vla, big, False)[0]
        case["fwdbwd_ms_T16k"], case["fwdbwd_peak_bytes_T16k"] = bench(f_vla, big, True)
        if tri.MAXNREG:  # the capped kernels' registers and spills as built
            case["capped_regs"] = {name: kernel_regs(getattr(tri, name), cap)
                                   for name, cap in tri.maxnreg_caps(tri.MAXNREG).items()}
    sweep_settings(os.path.join(out, "chunk_triton_variants.json"),
                   {"device": torch.cuda.get_device_name(), "cases": []}, settings or VARIANTS, measure)


def million(out):
    T = 1 << 20
    xs = inputs(1, T, 16, seed=11)
    torch.cuda.synchronize()
    t0 = time.time()
    with torch.no_grad():
        o, fin = run_triton(*xs, final=True)
    torch.cuda.synchronize()
    t1 = time.time()
    res = {"T": T, "B": 1, "H": 16, "dtype": "bf16", "triton_fwd_s": t1 - t0, "chain_solver": tri.CHAIN_SOLVER,
           "chain_ran": tri.LAST_CHAIN_SOLVER,
           "finite_o": bool(torch.isfinite(o).all()), "finite_S": bool(torch.isfinite(fin[0]).all()),
           "finite_A": bool(torch.isfinite(fin[1]).all())}
    # reference: the fp32 PyTorch chunk back end on the first 64k tokens (the op is causal, so the
    # prefix of the output is the output of the prefix); the whole 1M in the Python-loop reference
    # would take minutes of device time
    P = 65536
    with torch.no_grad():
        o_r, _ = run_torch_chunk(*[x[:, :P].float() for x in xs], final=False)
    res.update({"vs": "torch chunk fp32, first 65536 tokens", "o_first_64k": rel(o[:, :P], o_r),
                "o_abs_max": float(o.float().abs().max()), "S_abs_max": float(fin[0].abs().max()),
                "A_abs_max": float(fin[1].abs().max())})
    print(res, flush=True)
    write_json(os.path.join(out, "chunk_triton_million.json"), res)
    # then the whole 1M tokens against the fp32 PyTorch chunk back end: outputs and final states
    t0 = time.time()
    with torch.no_grad():
        o_r, fin_r = run_torch_chunk(*[x.float() for x in xs], final=True)
    torch.cuda.synchronize()
    res.update({"torch_chunk_fwd_s": time.time() - t0, "o_all_1M": rel(o, o_r), "S_final_1M": rel(fin[0], fin_r[0]),
                "A_final_1M": rel(fin[1], fin_r[1]), "o_last_64k": rel(o[:, -P:], o_r[:, -P:])})
    print(res, flush=True)
    write_json(os.path.join(out, "chunk_triton_million.json"), res)


def bench(fn, xs, backward):
    from triton.testing import do_bench
    if backward:
        xs = [x.detach().clone().requires_grad_() for x in xs]
        o = fn(*xs)
        do = torch.randn_like(o)

        def step():
            fn(*xs).backward(do)
    else:
        def step():
            with torch.no_grad():
                fn(*xs)
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    ms = do_bench(step, warmup=5, rep=40, grad_to_none=xs if backward else None)
    return ms, peak


def f_vla(q, k, v, u):
    return run_triton(q, k, v, u)[0]


def f_dn(q, k, v, u):
    from fla.ops.delta_rule import chunk_delta_rule
    beta = torch.ones(q.shape[:3], device=q.device, dtype=q.dtype)
    return chunk_delta_rule(q, k, v, beta, scale=q.shape[-1] ** -0.5, use_qk_l2norm_in_kernel=True)[0]


def f_sdpa(q, k, v, u):
    import torch.nn.functional as F
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=True).transpose(1, 2)


def timing(out, which):
    fns = {"vla_chunk_triton": f_vla}
    if which == "baselines":
        fns = {"chunk_delta_rule": f_dn, "sdpa_causal": f_sdpa}
    res = {"device": torch.cuda.get_device_name(), "B": B, "H": H, "K": D, "V": D, "dtype": "bf16",
           "phase1_precision": tri.PHASE1_PRECISION, "rows": []}
    for T in tqdm(TS, desc=which):
        xs = inputs(B, T, H, seed=T)
        for name, fn in fns.items():
            for bwd in (False, True):
                ms, peak = bench(fn, xs, bwd)
                row = {"name": name, "T": T, "mode": "fwd+bwd" if bwd else "fwd", "ms": ms, "peak_bytes": peak}
                res["rows"].append(row)
                print(row, flush=True)
        del xs
        torch.cuda.empty_cache()
    if which == "baselines":
        xs = inputs(B, 4096, H, dtype=torch.float32, seed=1)
        torch.cuda.synchronize()
        t0 = time.time()
        with torch.no_grad():
            naive_mod.naive_recurrent_vla(*xs, scale=D ** -0.5, **HYPER)
        torch.cuda.synchronize()
        res["sequential_loop_T4096_fwd_ms"] = (time.time() - t0) * 1e3
        print("sequential", res["sequential_loop_T4096_fwd_ms"], flush=True)
    write_json(os.path.join(out, f"chunk_triton_time_{which}.json"), res)


def wide(out, K=D, name="wide"):
    T, V = 16384, 128
    res = {"device": torch.cuda.get_device_name(), "B": B, "T": T, "H": H, "K": K, "V": V, "dtype": "bf16",
           "settings": tri.settings(), "rows": []}
    xs = inputs(B, T, H, K=K, V=V, seed=T)
    fns = {}
    try:  # DeltaNet first: the VLA rows at K = 128 take longer, and a call cut short should keep the peer's rows
        import fla  # noqa: F401
        fns["chunk_delta_rule"] = f_dn
    except ImportError:
        pass
    fns["vla_chunk_triton"] = f_vla
    for op, fn in fns.items():
        for bwd in (False, True):
            ms, peak = bench(fn, xs, bwd)
            row = {"name": op, "mode": "fwd+bwd" if bwd else "fwd", "ms": ms, "peak_bytes": peak}
            res["rows"].append(row)
            print(row, flush=True)
            write_json(os.path.join(out, f"chunk_triton_{name}.json"), res)


def kernel_ms(step, reps):
    """ms per call of step() by kernel name (torch.profiler, CUDA time), over reps calls after the caller's warm-up."""
    from torch.profiler import ProfilerActivity, profile as tprof
    torch.cuda.synchronize()
    with tprof(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    kern = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t > 0:
            kern[e.key] = t / reps / 1e3
    return kern


def kernel_regs(fn, maxnreg=None):
    """Registers, spills, warps and shared memory of a Triton kernel's last compiled build on this device ({} if
    it has not run); with ``maxnreg``, of its last build with that register cap (a build compiled earlier is reused,
    not compiled again, when a sweep comes back to its cap)."""
    out = {}
    for cache in fn.device_caches.values():
        for ck in cache[0].values():
            if maxnreg is None or getattr(ck.metadata, "maxnreg", None) == maxnreg:
                out = {"n_regs": ck.n_regs, "n_spills": ck.n_spills, "num_warps": ck.metadata.num_warps,
                       "shared": ck.metadata.shared}
    return out


def profile(out):
    T = 16384
    xs = [x.requires_grad_() for x in inputs(B, T, H, seed=5)]
    do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
    for _ in range(2):
        run_triton(*xs)[0].backward(do)
    kern = kernel_ms(lambda: run_triton(*xs)[0].backward(do), 5)  # ms per fwd+bwd
    regs = {name: kernel_regs(fn) for name, fn in vars(tri).items() if isinstance(fn, triton.runtime.JITFunction)}
    regs = {name: r for name, r in regs.items() if r}
    # phase 1 in chunks of 32 rows against the default
    chain = {}
    for sub in (32, tri.PHASE1_CHUNK):
        with build_settings({"PHASE1_CHUNK": sub}), torch.no_grad():
            run_triton(*xs)
            torch.cuda.synchronize()
            t0 = time.time()
            for _ in range(3):
                run_triton(*xs)
            torch.cuda.synchronize()
        chain[f"fwd_ms_phase1_chunk{sub}"] = (time.time() - t0) / 3 * 1e3
    res = {"T": T, "B": B, "H": H, "ms_per_fwd_bwd_by_kernel": kern, "registers": regs, "phase1_chunk": chain,
           "settings": tri.settings()}
    print(json.dumps(res, indent=1), flush=True)
    write_json(os.path.join(out, "chunk_triton_profile.json"), res)


PRECISION_GROUPS = ["", "wdir", "chol", "main", "wdir,chol", "wdir,main", "chol,main", "wdir,chol,main"]


def precision_groups(out, settings=None):
    """For each dict of build settings (``settings``; by default the "sub" form's groups of backward phase-1
    products in one tf32 pass, BWD_FAST_GROUPS, with and without its A cache): the output, final A and gradient
    errors at T = 16k (B=2, H=4, bf16, final-state gradients as in --check) against the fp32 PyTorch chunk form,
    computed once, and forward and forward+backward time and peak memory at T = 16k (B=4, H=16)."""
    res = {"device": torch.cuda.get_device_name(), "T": 16384, "bwd_phase1_precision": tri.BWD_PHASE1_PRECISION,
           "cases": []}
    T = 16384
    xs = inputs(2, T, 4, dtype=torch.bfloat16, seed=T)
    do = torch.randn(2, T, 4, D, device="cuda")
    dS = torch.randn(2, 4, D, D, device="cuda")
    dA = torch.randn(2, 4, D, D, device="cuda") * 1e-2
    o_r, fin_r, g_r = grads_of(lambda *a: run_torch_chunk(*a, final=True), [x.float() for x in xs], do, dS, dA)
    big = inputs(B, T, H, seed=21)

    def measure(case):
        t0 = time.time()
        o, fin, g = grads_of(lambda *a: run_triton(*a, final=True), xs, do, dS, dA)
        torch.cuda.synchronize()
        case["first_call_s"] = time.time() - t0
        case.update({"o": rel(o, o_r), "A": rel(fin[1], fin_r[1])},
                    **{n: rel(a, b) for n, a, b in zip(["dq", "dk", "dv", "du"], g, g_r)})
        case["fwd_ms_T16k"] = bench(f_vla, big, False)[0]
        case["fwdbwd_ms_T16k"], case["fwdbwd_peak_bytes_T16k"] = bench(f_vla, big, True)
    settings = settings or ([dict(BWD_FAST_GROUPS=g, BWD_CACHE_A=1, BWD_PHASE1_FORM="sub") for g in PRECISION_GROUPS]
                            + [dict(BWD_CACHE_A=0, BWD_PHASE1_FORM="sub")])
    sweep_settings(os.path.join(out, "chunk_triton_precision_groups.json"), res, settings, measure)


def profile_fwd(out):
    """The forward at T = 4096 (B=4, H=16, bf16), where the sequential loop is timed: time per kernel
    (torch.profiler), the whole call (CUDA events) and the host-side layout, to see what the 500x goal
    is up against."""
    T = 4096
    xs = inputs(B, T, H, seed=T)
    res = {"T": T, "B": B, "H": H, "chain_solver": tri.CHAIN_SOLVER}
    for solver in ("cholesky", "newton"):
        with build_settings({"CHAIN_SOLVER": solver}):
            with torch.no_grad():
                for _ in range(3):
                    run_triton(*xs)
                kern = kernel_ms(lambda: run_triton(*xs), 10)
            res[f"{solver}_ms_by_kernel"] = kern
            res[f"{solver}_fwd_ms"] = bench(f_vla, xs, False)[0]
    t0 = time.perf_counter()
    for _ in range(20):
        tri._Layout(B, T, torch.zeros(B, dtype=torch.int64), None, 64, 1e-3, "cuda")  # (uncached)
    torch.cuda.synchronize()
    res["layout_host_ms"] = (time.perf_counter() - t0) / 20 * 1e3
    print(json.dumps(res, indent=1), flush=True)
    write_json(os.path.join(out, "chunk_triton_profile_fwd4k.json"), res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--settings", default=None,
                    help='with --variants or --precision-groups: a JSON list of settings dicts instead of VARIANTS, e.g. \'[{}, {"CHAIN_WARPS": 8}]\'')
    for s in ("smoke", "variants", "check", "million", "time", "baselines", "profile", "tf32", "precision_groups",
              "profile_fwd", "diagnose", "wide", "smoke_wide_k", "wide_k"):
        ap.add_argument(f"--{s.replace('_', '-')}", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.tf32:
        tri.PHASE1_PRECISION = "tf32"
    import traceback
    for flag, fn in (("smoke", lambda: smoke(a.out)), ("variants", lambda: variants(a.out, json.loads(a.settings) if a.settings else None)), ("check", lambda: check(a.out)), ("million", lambda: million(a.out)),
                     ("profile", lambda: profile(a.out)), ("time", lambda: timing(a.out, "vla")),
                     ("baselines", lambda: timing(a.out, "baselines")),
                     ("precision_groups", lambda: precision_groups(a.out, json.loads(a.settings) if a.settings else None)), ("profile_fwd", lambda: profile_fwd(a.out)),
                     ("diagnose", lambda: diagnose(a.out)), ("wide", lambda: wide(a.out)),
                     ("smoke_wide_k", lambda: smoke(a.out, SMOKE_WIDE_K, "smoke_wide_k")),
                     ("wide_k", lambda: wide(a.out, 128, "wide_k128"))):
        if getattr(a, flag):
            try:
                fn()
            except Exception:
                traceback.print_exc()


if __name__ == "__main__":
    main()
