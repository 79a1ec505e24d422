"""What the write directions' 16 x 16 eliminations cost alone (issue 6): 65536 of them (T = 16k, B = 4, H = 16, chunks of
64 in 16-row sub-chunks), each in its own program, with 1, 2 or 4 warps (the chunk module's _chol_inverse, and "v2", a
variant that takes the pivot's row by a second reduction instead of the column's layout change); and a per-chunk
blocked Cholesky factorisation from G = U A0 U^T (four 16-row blocks, left-looking, the off-diagonal factors through a
scratch in global memory: the prototype of _fwd_factor) for 16384 chunks, by warps and product precision. The
matrices are those of unit-scale u (|u|^2 = 1/64) and A0 = 10 I; the factors are checked against float64.

Usage: PYTHONPATH=. python benchmarks/chunk_triton_elim_bench.py OUT_DIR   (on a GPU: OUT_DIR/chunk_triton_elim_bench.json;
through Triton's interpreter on a CPU it only checks the factors)
"""
import json
import os
import sys

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chunk_triton_dev as tdev  # noqa: E402
from vla.ops.vla.triton import chunk as tri  # noqa: E402


@triton.jit
def _chol_inverse_v2(M, C: tl.constexpr, delta_min):
    r = tl.arange(0, C)
    N = tl.zeros([C, C], dtype=tl.float32)
    D = tl.zeros([C], dtype=tl.float32)
    for j in range(C):
        col = tl.sum(tl.where(r[None, :] == j, M, 0.0), axis=1)   # [C] rows
        colr = tl.sum(tl.where(r[:, None] == j, M, 0.0), axis=0)  # row j = column j (symmetric), [C] cols
        dj = tl.maximum(tl.sum(tl.where(r == j, colr, 0.0), axis=0), delta_min)
        below = tl.where(r > j, col, 0.0)
        belowr = tl.where(r > j, colr, 0.0)
        mult = below / dj
        M = M - mult[:, None] * belowr[None, :]
        N = tl.where(r[None, :] == j, mult[:, None], N)
        D = tl.where(r == j, dj, D)
    return tri._unit_lower_inverse_pow(N, C) / tl.sqrt(D)[:, None]


@triton.jit
def _elim_kernel(Mp, out, dmin, V2: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    r = tl.arange(0, 16)
    offs = r[:, None] * 16 + r[None, :]
    M = tl.load(Mp + pid * 256 + offs)
    if V2:
        R = _chol_inverse_v2(M, 16, dmin)
    else:
        R = tri._chol_inverse(M, 16, dmin)
    tl.store(out + pid * 256 + offs, R)


@triton.jit
def _factor_kernel(G, rinv, rfac, dmin, NB: tl.constexpr, PREC: tl.constexpr, V2: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    CC: tl.constexpr = NB * 16
    r = tl.arange(0, 16)
    o16 = r[:, None] * 16 + r[None, :]
    eye = (r[:, None] == r[None, :]).to(tl.float32)
    g = G + pid * CC * CC
    rf = rfac + pid * NB * NB * 256
    for b in tl.static_range(NB):
        S = eye + tl.load(g + (b * 16 + r)[:, None] * CC + (b * 16 + r)[None, :])
        for k in tl.static_range(b):
            Rbk = tl.load(rf + (b * NB + k) * 256 + o16)
            S -= tl.dot(Rbk, tl.trans(Rbk), input_precision=PREC)
        if V2:
            Ri = _chol_inverse_v2(S, 16, dmin)
        else:
            Ri = tri._chol_inverse(S, 16, dmin)
        tl.store(rinv + (pid * NB + b) * 256 + o16, Ri)
        for i in tl.static_range(b + 1, NB):
            X = tl.load(g + (i * 16 + r)[:, None] * CC + (b * 16 + r)[None, :])
            for k in tl.static_range(b):
                X -= tl.dot(tl.load(rf + (i * NB + k) * 256 + o16), tl.trans(tl.load(rf + (b * NB + k) * 256 + o16)),
                            input_precision=PREC)
            tl.store(rf + (i * NB + b) * 256 + o16, tl.dot(X, tl.trans(Ri), input_precision=PREC))
        tl.debug_barrier()


def make_G(n, dev, dtype=torch.float32):
    g = torch.Generator(device="cpu").manual_seed(0)
    U = torch.randn(n, 64, 64, generator=g, dtype=torch.float64) / 8.0 / 8.0 ** 0.5  # |u|^2 ~ 1/64
    A0 = torch.eye(64, dtype=torch.float64) * 10.0
    G = (U @ A0 @ U.transpose(1, 2))
    return G.to(dev, dtype)


def check(dev):
    n = 8
    G = make_G(n, dev)
    ref = torch.linalg.cholesky(torch.eye(64, dtype=torch.float64) + G.double().cpu())
    res = {}
    for v2 in (0, 1):
        rinv = torch.empty(n, 4, 16, 16, device=dev)
        rfac = torch.zeros(n, 4, 4, 16, 16, device=dev)
        _factor_kernel[(n,)](G, rinv, rfac, 1e-4, NB=4, PREC="ieee", V2=v2, num_warps=1)
        err = 0.0
        for b in range(4):
            Rb = ref[:, b * 16:(b + 1) * 16, b * 16:(b + 1) * 16]
            e = (rinv[:, b].double().cpu() - torch.linalg.inv(Rb)).norm() / torch.linalg.inv(Rb).norm()
            err = max(err, float(e))
        res[f"factor_v{v2}_rel"] = err
    return res


def bench(dev, out):
    from triton.testing import do_bench
    res = {"device": torch.cuda.get_device_name()}
    res.update(check(dev))
    nm = 65536
    Gs = make_G(nm // 4, dev)
    Ms = torch.stack([torch.eye(16, device=dev) + Gs[:, b * 16:(b + 1) * 16, b * 16:(b + 1) * 16] for b in range(4)],
                     1).reshape(nm, 16, 16).contiguous()
    o = torch.empty_like(Ms)
    for v2 in (0, 1):
        for w in (1, 2, 4):
            f = lambda: _elim_kernel[(nm,)](Ms, o, 1e-4, V2=v2, num_warps=w)
            f()
            res[f"elim65536_v{v2}_w{w}_ms"] = do_bench(f, warmup=20, rep=100)
            res[f"elim_v{v2}_w{w}_regs"] = tdev.kernel_regs(_elim_kernel)
    nc = 16384
    G = make_G(nc, dev)
    rinv = torch.empty(nc, 4, 16, 16, device=dev)
    rfac = torch.zeros(nc, 4, 4, 16, 16, device=dev)
    for prec in ("tf32", "ieee"):
        for v2 in (0, 1):
            for w in (1, 2, 4):
                f = lambda: _factor_kernel[(nc,)](G, rinv, rfac, 1e-4, NB=4, PREC=prec, V2=v2, num_warps=w)
                f()
                res[f"factor16384_{prec}_v{v2}_w{w}_ms"] = do_bench(f, warmup=20, rep=100)
                res[f"factor_{prec}_v{v2}_w{w}_regs"] = tdev.kernel_regs(_factor_kernel)
    print(json.dumps(res, indent=1))
    os.makedirs(out, exist_ok=True)
    tdev.write_json(os.path.join(out, "chunk_triton_elim_bench.json"), res)


if __name__ == "__main__":
    if torch.cuda.is_available():
        bench("cuda", sys.argv[1])
    else:
        print(check("cpu"))
