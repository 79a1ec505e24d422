"""The GPU benchmark suite (issue 5): VLA back ends against DeltaNet and softmax attention.

Usage (CUDA machine, repository root; flash-linear-attention importable as `fla` for chunk_delta_rule):
    python benchmarks/suite.py --out benchmarks/results/suite_<what>_<date>.json
    python benchmarks/suite.py --ops chunk_triton,sdpa --T 4096,16384 --modes fwd,fwdbwd --no-decode --out ...

Defaults: B=4, H=16, K=V=64, bf16, T = 1k..64k. Every timing of one JSON comes from one run on one
device, and the ratios in it are computed from those timings only. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import traceback

import torch
import torch.nn.functional as F
from tqdm import tqdm

from _bench import env_info, is_oom, peak_memory, sync, time_gpu, time_loop, vla_inputs, write_json

from vla.report.speed import SUITE_OPS

ALL_OPS = list(SUITE_OPS)
FWD_ONLY = {"naive", "fused"}


# ---- the ops --------------------------------------------------------------------------------------

def _chunk_vla():
    try:
        from vla.ops import chunk_vla
    except ImportError:
        from vla.ops.vla.chunk import chunk_vla
    return chunk_vla


def make_case(op, B, T, H, K, V, dtype, grad):
    """Returns (fn, inputs that get grads) for one op; fn runs forward (and backward when grad)."""
    if op in ("naive", "fused", "chunk_torch", "chunk_triton"):
        xs = vla_inputs(B, T, H, K, V, dtype)
        if op == "naive":
            from vla.ops.vla.naive import naive_recurrent_vla as f
        elif op == "fused":
            from vla.ops.vla.fused_recurrent import fused_recurrent_vla as f
        else:
            chunk_vla = _chunk_vla()
            backend = "torch" if op == "chunk_torch" else "triton"
            f = lambda *a: chunk_vla(*a, backend=backend)  # noqa: E731
        args = xs
    elif op == "fla_delta":
        from fla.ops.delta_rule import chunk_delta_rule

        q, k, v, _ = vla_inputs(B, T, H, K, V, dtype)
        beta = torch.rand(B, T, H, device="cuda", dtype=dtype)
        args = [q, k, v, beta]
        f = lambda *a: chunk_delta_rule(*a, use_qk_l2norm_in_kernel=True)  # noqa: E731
    elif op == "sdpa":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v, _ = vla_inputs(B, T, H, K, V, dtype)
        args = [x.transpose(1, 2).contiguous() for x in (q, k, v)]  # [B, H, T, D], SDPA's layout

        def f(*a):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(*a, is_causal=True), None
    else:
        raise ValueError(f"unknown op {op!r}")

    if not grad:
        def fn():
            with torch.no_grad():
                return f(*args)
        return fn, None
    for x in args:
        x.requires_grad_(True)
    do = torch.randn_like(f(*args)[0])

    def fn():
        o = f(*args)[0]
        o.backward(do)
    return fn, args


def bench_ops(ops, Ts, modes, B, H, K, V, dtype, naive_max_T, max_ms, on_row=None):
    rows = []
    too_slow = set()
    cases = [(op, mode, T) for op in ops for mode in modes for T in Ts
             if not (mode == "fwdbwd" and op in FWD_ONLY)]
    for op, mode, T in tqdm(cases, desc="ops"):
        row = {"op": op, "mode": mode, "T": T}
        if op == "naive" and T > naive_max_T:
            continue
        if (op, mode) in too_slow:
            rows.append({**row, "status": "skipped", "why": f"a shorter T took more than {max_ms} ms"})
            continue
        fn = None
        try:
            fn, grads = make_case(op, B, T, H, K, V, dtype, grad=(mode == "fwdbwd"))
            fn()  # compile / warm up before measuring memory
            sync()
            if grads:
                for x in grads:
                    x.grad = None
            row.update(peak_memory(fn))
            row.update(time_gpu(fn, grad_to_none=grads, warm=False))  # warmed up above
            row["status"] = "ok"
            row["us_per_token"] = row["ms"] * 1e3 / T
            if row["ms"] > max_ms:
                too_slow.add((op, mode))
        except ImportError as e:
            row.update(status="unavailable", error=repr(e)[:300])
        except Exception as e:  # noqa: BLE001 - one failing case must not lose the run
            row.update(status="oom" if is_oom(e) else "error", error=repr(e)[:500])
            if not is_oom(e):
                traceback.print_exc()
        finally:
            del fn
            torch.cuda.empty_cache()
        rows.append(row)
        tqdm.write(str(row))
        if on_row is not None:
            on_row(rows)
    return rows


# ---- decoding -------------------------------------------------------------------------------------

def graph_replay(fn, n_state=1, n_steps=200) -> dict:
    """Time per replay of ``fn`` captured in a CUDA graph: the GPU time of a step without the Python
    launch overhead (what a decoder that captures its step in a graph would pay)."""
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        r = time_loop(lambda i: g.replay(), n_state, n_steps)
        r["method"] = "CUDA graph replay, wall clock over back-to-back replays"
        return r
    except Exception as e:  # noqa: BLE001 - report, don't lose the run
        return {"ms": None, "error": repr(e)[:300]}


def bench_decode(Ls, B, H, K, V, dtype, l2_bytes):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vla.ops.utils import input_checks
    from vla.ops.vla.naive import check_vla_inputs
    from vla.ops.vla.fused_recurrent import fused_recurrent_vla
    from vla.ops.vla.triton.fused_recurrent import fused_recurrent_vla_fwd

    rows = []
    q1, k1, v1, u1 = vla_inputs(B, 1, H, K, V, dtype, seed=7)
    state_bytes = B * H * (K * V + K * K) * 4
    n_state = max(1, min(64, math.ceil(4 * l2_bytes / state_bytes)))
    states = []
    for i in range(n_state):
        S = torch.randn(B, H, K, V, device="cuda") * 0.1
        X = torch.randn(B, H, K, K, device="cuda")
        states.append((S, X @ X.transpose(-1, -2) / K + 0.5 * torch.eye(K, device="cuda")))
    offs = torch.zeros(B, dtype=torch.int64)  # unused when offset_int is given

    # correctness of the decode path on this device: 5 steps from a random state against the float64 loop
    from vla.ops.vla.naive import naive_recurrent_vla

    xs = vla_inputs(B, 5, H, K, V, dtype, seed=8)
    st, outs = states[0], []
    with torch.no_grad():
        for t in range(5):
            o, st = fused_recurrent_vla(*(x[:, t:t + 1] for x in xs), initial_state=st, output_final_state=True,
                                        offset=62 + t)
            outs.append(o)
        o_ref, (S_ref, A_ref) = naive_recurrent_vla(*(x.double() for x in xs), initial_state=tuple(
            x.double() for x in states[0]), output_final_state=True, offset=62)
    o_all = torch.cat(outs, 1).double()
    check = {"op": "vla_decode_check", "steps": 5, "offset": 62,
             "o_rel": float((o_all - o_ref).norm() / o_ref.norm()),
             "S_rel": float((st[0].double() - S_ref).norm() / S_ref.norm()),
             "A_rel": float((st[1].double() - A_ref).norm() / A_ref.norm())}
    rows.append(check)
    tqdm.write(str(check))

    for L in tqdm(Ls, desc="decode"):
        # VLA: one token with the state carried (the state does not grow with L; offset = L)
        def vla_step(i, L=L):
            j = i % n_state
            _, states[j] = fused_recurrent_vla(q1, k1, v1, u1, initial_state=states[j], output_final_state=True,
                                               offset=L + i)

        def vla_kernel(i, L=L):
            j = i % n_state
            _, S, A = fused_recurrent_vla_fwd(q1, k1, v1, u1, scale=K ** -0.5, lambda0=0.1, period=64,
                                              nudge_eps=1e-3, delta_min=1e-4, eps=1e-6, S0=states[j][0],
                                              A0=states[j][1], output_final_state=True, offsets=offs,
                                              cu_seqlens=None, N=B, offset_int=L + i)
            states[j] = (S, A)

        def vla_checks_only(i, L=L):
            j = i % n_state
            check_vla_inputs(q1, k1, v1, u1, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                             eps=1e-6, initial_state=states[j], offset=L + i, cu_seqlens=None)

        with torch.no_grad():
            r_on = time_loop(vla_step, n_state)
            with input_checks(finite=False):
                r_off = time_loop(vla_step, n_state)
                g_off = time_gpu(lambda: vla_step(0))
                r_chk = time_loop(vla_checks_only, n_state)
            r_k = time_loop(vla_kernel, n_state)
            S_g, A_g = states[0]
            r_graph = graph_replay(lambda: fused_recurrent_vla_fwd(
                q1, k1, v1, u1, scale=K ** -0.5, lambda0=0.1, period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6,
                S0=S_g, A0=A_g, output_final_state=True, offsets=offs, cu_seqlens=None, N=B, offset_int=L))
        rows.append({"op": "vla_decode", "L": L, "loop_ms_checks_on": r_on["ms"], "loop_ms_checks_off": r_off["ms"],
                     "loop_ms_kernel_only": r_k["ms"], "loop_ms_argument_checks_only": r_chk["ms"],
                     "graph_replay_ms_kernel": r_graph["ms"], "gpu_ms_checks_off": g_off["ms"],
                     "state_sets": n_state, "state_mib": state_bytes / 2 ** 20})
        tqdm.write(str(rows[-1]))

        # SDPA with a KV cache of length L: write the new token's k, v at position L-1, attend
        try:
            cache_bytes = 2 * B * H * L * K * 2
            n_cache = max(1, min(16, math.ceil(4 * l2_bytes / cache_bytes)))
            caches = [(torch.randn(B, H, L, K, device="cuda", dtype=dtype),
                       torch.randn(B, H, L, V, device="cuda", dtype=dtype)) for _ in range(n_cache)]
            qd, kd, vd = (x.transpose(1, 2).contiguous() for x in (q1, k1, v1))  # [B, H, 1, D]

            def sdpa_step(i):
                kc, vc = caches[i % n_cache]
                kc[:, :, L - 1:L].copy_(kd)
                vc[:, :, L - 1:L].copy_(vd)
                return F.scaled_dot_product_attention(qd, kc, vc)

            with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                r = time_loop(sdpa_step, n_cache)
                g = time_gpu(lambda: sdpa_step(0))
                r_graph = graph_replay(lambda: sdpa_step(0), n_state=1)
            rows.append({"op": "sdpa_decode", "L": L, "loop_ms": r["ms"], "gpu_ms": g["ms"],
                         "graph_replay_ms": r_graph["ms"], "cache_sets": n_cache, "cache_mib": cache_bytes / 2 ** 20})
            del caches
        except Exception as e:  # noqa: BLE001
            rows.append({"op": "sdpa_decode", "L": L, "status": "oom" if is_oom(e) else "error", "error": repr(e)[:300]})
        torch.cuda.empty_cache()
        tqdm.write(str(rows[-1]))
    return rows


# ---- ratios from this run -------------------------------------------------------------------------

def compute_ratios(rows, drows):
    t = {(r["op"], r["mode"], r["T"]): r["ms"] for r in rows if r.get("status") == "ok"}
    Ts = sorted({r["T"] for r in rows})
    out = {"fused_speedup_over_naive_fwd": {T: t[("naive", "fwd", T)] / t[("fused", "fwd", T)]
                                            for T in Ts if ("naive", "fwd", T) in t and ("fused", "fwd", T) in t}}
    vs_sdpa, crossover = {}, {}
    for (op, mode, _T) in sorted(set((o, m, 0) for (o, m, _) in t)):
        if op == "sdpa":
            continue
        r = {T: t[("sdpa", mode, T)] / t[(op, mode, T)] for T in Ts if (op, mode, T) in t and ("sdpa", mode, T) in t}
        if r:
            vs_sdpa[f"{op}/{mode}"] = r
            # measured crossover: the smallest measured T from which the op is faster at every larger measured T
            faster = [T for T in sorted(r) if all(r[T2] > 1 for T2 in r if T2 >= T)]
            crossover[f"{op}/{mode}"] = faster[0] if faster else None
    out["sdpa_ms_over_op_ms"] = vs_sdpa
    out["crossover_T_faster_than_sdpa"] = crossover
    vla = {r["L"]: r for r in drows if r["op"] == "vla_decode" and "L" in r}
    sd = {r["L"]: r for r in drows if r["op"] == "sdpa_decode" and "loop_ms" in r}
    if vla:
        Ls = sorted(vla)
        out["decode_sdpa_over_vla_loop_checks_off"] = {L: sd[L]["loop_ms"] / vla[L]["loop_ms_checks_off"] for L in Ls if L in sd}
        out["decode_sdpa_over_vla_loop_checks_on"] = {L: sd[L]["loop_ms"] / vla[L]["loop_ms_checks_on"] for L in Ls if L in sd}
        out["decode_sdpa_over_vla_gpu"] = {L: sd[L]["gpu_ms"] / vla[L]["gpu_ms_checks_off"] for L in Ls if L in sd}
        out["decode_sdpa_over_vla_graph_replay"] = {L: sd[L]["graph_replay_ms"] / vla[L]["graph_replay_ms_kernel"]
                                                     for L in Ls if L in sd and sd[L].get("graph_replay_ms")
                                                     and vla[L].get("graph_replay_ms_kernel")}
        faster = [L for L in Ls if all(out["decode_sdpa_over_vla_loop_checks_off"].get(L2, 0) > 1 for L2 in Ls if L2 >= L)]
        out["decode_crossover_L_vla_faster_checks_off"] = faster[0] if faster else None
        out["decode_vla_flatness_max_over_min_checks_off"] = (max(vla[L]["loop_ms_checks_off"] for L in Ls) /
                                                              min(vla[L]["loop_ms_checks_off"] for L in Ls))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write (atomically)")
    ap.add_argument("--ops", default=",".join(ALL_OPS), help=f"comma-separated subset of {ALL_OPS}")
    ap.add_argument("--T", default="1024,2048,4096,8192,16384,32768,65536")
    ap.add_argument("--modes", default="fwd,fwdbwd")
    ap.add_argument("--decode-L", default="1024,2048,4096,8192,16384,32768,65536")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--V", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--naive-max-T", type=int, default=4096, help="the sequential loop runs only up to this T")
    ap.add_argument("--max-ms", type=float, default=4000.0,
                    help="skip longer T for an (op, mode) once one of its timings exceeds this")
    args = ap.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in ALL_OPS:
            raise SystemExit(f"--ops: unknown op {o!r}; choose from {ALL_OPS}")
    Ts = [int(x) for x in args.T.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    Ls = [int(x) for x in args.decode_L.split(",") if x]
    dtype = getattr(torch, args.dtype)
    env = env_info()
    config = {"B": args.B, "H": args.H, "K": args.K, "V": args.V, "dtype": args.dtype, "T": Ts, "ops": ops,
              "modes": modes, "decode_L": [] if args.no_decode else Ls, "naive_max_T": args.naive_max_T,
              "max_ms": args.max_ms}
    if "chunk_triton" in ops:  # the Triton chunk back end's build settings (environment variables VLA_*)
        from vla.ops.vla.triton import chunk as tri
        config["chunk_triton_settings"] = tri.settings()
    res = {"env": env, "config": config, "results": [], "decode": []}
    def partial(rows):  # keep what is measured if the run is cut short
        write_json(args.out, {**res, "results": rows, "partial": True})

    res["results"] = bench_ops(ops, Ts, modes, args.B, args.H, args.K, args.V, dtype, args.naive_max_T, args.max_ms,
                               on_row=partial)
    write_json(args.out, res)  # keep what we have if decoding fails
    if not args.no_decode:
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        res["decode"] = bench_decode(Ls, args.B, args.H, args.K, args.V, dtype, l2)
    res["ratios"] = compute_ratios(res["results"], res["decode"])
    write_json(args.out, res)
    print(res["ratios"])


if __name__ == "__main__":
    main()
