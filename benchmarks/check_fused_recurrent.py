"""GPU check of fused_recurrent_vla at real sizes against the float64 reference, plus a config sweep.

Usage (on a CUDA machine, from the repository root):
    python benchmarks/check_fused_recurrent.py --out benchmarks/results/check_fused_<date>.json

Checks (relative L2 errors, reported as JSON, each with the tolerance of tests/ops/test_fused_recurrent.py:
fp32_tol = 8 sqrt(T K) kappa(A) 2**-24, plus 2**-9 for a bf16 output):
  * B=4, H=16, K=V=64, T in --T (up to 16k), bf16 and fp32 inputs; the reference is
    naive_recurrent_vla in float64 on the GPU for sequence 0 and two heads (the first and the last);
  * packed ragged sequences (cu_seqlens) with per-sequence offsets and random initial states;
  * K=V=128, and non-power-of-two K=100, V=48;
  * the float64 kernel path;
  * 64-bit indexing: packed and dense batches with more than 2**31 elements per input tensor, the last
    sequence checked.
Then a sweep of (value block BV, num_warps, loop form) at T=4096 and first timings.
"""

from __future__ import annotations

import argparse
import math

import torch
from tqdm import tqdm

from _bench import env_info, time_gpu, vla_inputs, write_json

from vla.ops.vla.fused_recurrent import fused_recurrent_vla
from vla.ops.vla.naive import naive_recurrent_vla
from vla.ops.vla.triton.fused_recurrent import default_config, fused_recurrent_vla_fwd
from vla.ops.utils import input_checks

U32 = 2.0 ** -24


def rel(x, ref):
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def kappa(*As):
    return max(float(torch.linalg.cond(A.double()).max()) for A in As)


def random_state(N, H, K, V, device="cuda", seed=1):
    g = torch.Generator(device=device).manual_seed(seed)
    S0 = torch.randn(N, H, K, V, device=device, generator=g, dtype=torch.float64)
    X = torch.randn(N, H, K, K, device=device, generator=g, dtype=torch.float64)
    A0 = X @ X.transpose(-1, -2) / K + 0.5 * torch.eye(K, device=device, dtype=torch.float64)
    return S0, A0


def check_dense(T, dtype, B=4, H=16, K=64, V=64, init=False, heads=(0, -1), seed=0):
    q, k, v, u = vla_inputs(B, T, H, K, V, dtype, seed=seed)
    st = random_state(B, H, K, V) if init else None
    kw = dict(period=64, nudge_eps=1e-3)
    with torch.no_grad():
        o, (S, A) = fused_recurrent_vla(q, k, v, u, output_final_state=True,
                                        initial_state=None if st is None else (st[0].float(), st[1].float()), **kw)
        hs = [h % H for h in heads]
        sl = lambda x: x[:1, :, hs].double()  # noqa: E731
        st_ref = None if st is None else (st[0][:1, hs], st[1][:1, hs])
        o_ref, (S_ref, A_ref) = naive_recurrent_vla(*(sl(x) for x in (q, k, v, u)), initial_state=st_ref,
                                                    output_final_state=True, **kw)
    A_init = torch.eye(K, device="cuda", dtype=torch.float64) / 0.1 if st is None else st_ref[1]
    tol = 8 * math.sqrt(T * K) * kappa(A_ref, A_init) * U32
    r = {"T": T, "dtype": str(dtype), "B": B, "H": H, "K": K, "V": V, "init_state": init,
         "o": rel(o[:1, :, hs], o_ref), "S": rel(S[:1, hs], S_ref), "A": rel(A[:1, hs], A_ref),
         "tol_state": tol, "tol_o": tol + (2.0 ** -9 if dtype in (torch.bfloat16, torch.float16) else 0.0)}
    r["ok"] = r["o"] < r["tol_o"] and r["S"] < tol and r["A"] < tol
    return r


def check_varlen(lens, offsets, dtype=torch.bfloat16, H=16, K=64, V=64, heads=(0, -1), check_seqs=None):
    T = sum(lens)
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int64, device="cuda")
    q, k, v, u = vla_inputs(1, T, H, K, V, dtype, seed=3)
    N = len(lens)
    S0, A0 = random_state(N, H, K, V)
    kw = dict(period=64, nudge_eps=1e-3)
    with torch.no_grad(), input_checks(finite=False):
        o, (S, A) = fused_recurrent_vla(q, k, v, u, cu_seqlens=cu, offset=offsets, output_final_state=True,
                                        initial_state=(S0.float(), A0.float()), **kw)
    hs = [h % H for h in heads]
    out = {"lens": lens if len(lens) <= 8 else f"{len(lens)} x {lens[0]}", "T_total": T, "H": H,
           "elements_per_tensor": T * H * K, "seqs": []}
    seqs = range(N) if check_seqs is None else check_seqs
    ok = True
    for i in seqs:
        s, e = int(cu[i]), int(cu[i + 1])
        sl = lambda x: x[:, s:e][:, :, hs].double()  # noqa: E731
        o_ref, (S_ref, A_ref) = naive_recurrent_vla(*(sl(x) for x in (q, k, v, u)), offset=offsets[i],
                                                    initial_state=(S0[i:i + 1, hs], A0[i:i + 1, hs]),
                                                    output_final_state=True, **kw)
        tol = 8 * math.sqrt((e - s) * K) * kappa(A_ref, A0[i:i + 1, hs]) * U32
        r = {"seq": i, "len": e - s, "o": rel(o[:, s:e][:, :, hs], o_ref), "S": rel(S[i:i + 1, hs], S_ref),
             "A": rel(A[i:i + 1, hs], A_ref), "tol_state": tol, "tol_o": tol + 2.0 ** -9}
        r["ok"] = r["o"] < r["tol_o"] and r["S"] < tol and r["A"] < tol
        ok &= r["ok"]
        out["seqs"].append(r)
    out["ok"] = ok
    return out


def check_big_dense(B, T, H=16, K=64, V=64):
    """Dense batch whose tensors have more than 2**31 elements: check the last sequence."""
    q, k, v, u = vla_inputs(B, T, H, K, V, torch.bfloat16, seed=4)
    with torch.no_grad(), input_checks(finite=False):
        o, _ = fused_recurrent_vla(q, k, v, u)
        hs = [0, H - 1]
        o_ref, _ = naive_recurrent_vla(*(x[-1:][:, :, hs].double() for x in (q, k, v, u)))
    tol = 8 * math.sqrt(T * K) * 10 * U32 + 2.0 ** -9
    err = rel(o[-1:][:, :, hs], o_ref)
    return {"B": B, "T": T, "elements_per_tensor": B * T * H * K, "o_last_seq": err, "tol_o": tol, "ok": err < tol}


def sweep(T=4096, B=4, H=16, K=64, V=64):
    """Time (value block BV, num_warps, loop form) variants of the kernel on one input set."""
    q, k, v, u = vla_inputs(B, T, H, K, V, torch.bfloat16, seed=5)
    offs = torch.zeros(B, dtype=torch.int64)
    rows = []
    vmax = triton_next_pow2(V)
    if K <= 64:
        configs = [(bv, w, True) for bv in (32, 64) for w in (2, 4, 8)] + [(64, 4, False), (64, 8, False)]
    else:
        configs = [(bv, w, True) for bv in (64, 128) for w in (8, 16)] + [(64, 8, False)]
    configs = [c for c in configs if c[0] <= vmax]
    ref = None
    for bv, w, use_while in tqdm(configs, desc=f"sweep K={K} V={V}"):
        fn = lambda: fused_recurrent_vla_fwd(q, k, v, u, scale=K ** -0.5, lambda0=0.1, period=64,  # noqa: E731
                                             nudge_eps=1e-3, delta_min=1e-4, eps=1e-6, S0=None, A0=None,
                                             output_final_state=True, offsets=offs, cu_seqlens=None, N=B,
                                             BV=bv, num_warps=w, use_while=use_while)
        try:
            with torch.no_grad():
                o, S, A = fn()
                if ref is None:
                    ref = o.float()
                agree = rel(o, ref)
                t = time_gpu(fn)
            rows.append({"BV": bv, "num_warps": w, "while_loop": use_while, "ms": t["ms"], "agree_rel": agree,
                         "us_per_token": t["ms"] * 1e3 / T})
        except Exception as e:  # noqa: BLE001 - record and go on
            rows.append({"BV": bv, "num_warps": w, "while_loop": use_while, "error": repr(e)[:300]})
    return {"T": T, "B": B, "H": H, "K": K, "V": V, "default": default_config(K, V, T, B * H), "rows": rows}


def triton_next_pow2(x):
    return 1 << (x - 1).bit_length()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--T", default="1024,4096,16384", help="comma-separated sequence lengths")
    ap.add_argument("--skip-big", action="store_true", help="skip the > 2**31-element indexing checks")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-extra", action="store_true", help="skip K=128, non-power-of-two, float64, varlen checks")
    args = ap.parse_args()
    Ts = [int(t) for t in args.T.split(",")]
    res = {"env": env_info(), "what": "fused_recurrent_vla vs naive_recurrent_vla (float64) on the GPU"}
    checks = []
    for dtype in (torch.bfloat16, torch.float32):
        for T in tqdm(Ts, desc=f"dense {dtype}"):
            checks.append(check_dense(T, dtype, init=(T == Ts[0])))
            print(checks[-1], flush=True)
    if not args.skip_extra:
        checks.append(check_dense(4096, torch.bfloat16, K=128, V=128, H=8))
        checks.append(check_dense(2048, torch.bfloat16, K=100, V=48, H=8))
        checks.append(check_dense(512, torch.float64, B=1, H=2))
        for c in checks[-3:]:
            print(c, flush=True)
        res["varlen"] = check_varlen([1000, 5000, 123, 10261], [0, 17, 64, 3])
        print(res["varlen"], flush=True)
    res["dense"] = checks
    if not args.skip_big:
        n = (2 ** 31) // (1024 * 16 * 64) + 3
        res["big_varlen"] = check_varlen([1024] * n, [0] * n, check_seqs=[n - 1])
        print(res["big_varlen"], flush=True)
        torch.cuda.empty_cache()
        res["big_dense"] = check_big_dense(n, 1024)
        print(res["big_dense"], flush=True)
        torch.cuda.empty_cache()
    if not args.skip_sweep:
        res["sweep"] = [sweep(), sweep(T=1024, K=128, V=128, H=16)]
        for s in res["sweep"]:
            for r in s["rows"]:
                print(s["K"], r, flush=True)
            ok_rows = [r for r in s["rows"] if "ms" in r]
            if ok_rows:
                print("best", s["K"], min(ok_rows, key=lambda r: r["ms"]), flush=True)
    res["all_ok"] = all(c["ok"] for c in checks) and \
        all(res[k]["ok"] for k in ("varlen", "big_varlen", "big_dense") if k in res)
    write_json(args.out, res)
    print("all_ok", res["all_ok"])


if __name__ == "__main__":
    main()
