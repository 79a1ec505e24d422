"""Would the A chain survive being carried over blocks of chunks? A CPU probe in PyTorch (no kernel), for the next
step named in benchmarks/README.md (Triton chunk kernels: next steps).

Per chunk of C rows U (no nudge inside a chunk: the period is a multiple of C), A1 = (A0^{-1} + G)^{-1} + eps I with
G = U^T U (K x K) and eps the nudge where the chunk ends on a period. That is a linear-fractional map of A:
with A = X Y^{-1},

    [X1; Y1] = [[I + eps G, eps I], [G, I]] [X0; Y0],

so a block of L chunks maps A to (P11 A + P12)(P21 A + P22)^{-1}, P the product of the L 2K x 2K matrices. The
products over the blocks are independent of each other (parallel), and only the pass over the blocks is serial,
one K x K solve per block. This script measures, against the chain in float64 (one Woodbury step per chunk), the
relative error of A at every block start when the block products and the pass over the blocks run in fp32, for
blocks of 16 and 64 chunks, with u as the layer makes it (|u| = 1/sqrt(K)), with |u| = 1, and with the layer's
norm but each u mostly along one shared direction (anisotropic G); and the condition
number of the solve's matrix Y = P21 A + P22, which sets how many Newton-Schulz iterations a kernel would need.

    python benchmarks/chain_blocked_probe.py [--out benchmarks/results/chain_blocked_probe_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

K, C, NCHUNK = 64, 64, 256  # T = 16384
LAMBDA0, EPS = 0.1, 1e-3  # period = C: every chunk ends on a nudge


def serial_float64(Us):
    """A entering every chunk (and after the last), float64, one Woodbury step per chunk."""
    A = torch.eye(K, dtype=torch.float64) / LAMBDA0
    out = [A]
    for U in Us:
        W = A @ U.T
        M = torch.eye(U.shape[0], dtype=torch.float64) + U @ W
        A = A - W @ torch.linalg.solve(M, W.T)
        A = 0.5 * (A + A.T) + EPS * torch.eye(K, dtype=torch.float64)
        out.append(A)
    return out


def blocked(Us, L, dtype):
    """A at every block start, the block products and the pass over the blocks in ``dtype``; also cond(Y)."""
    eye = torch.eye(K, dtype=dtype)
    A = eye / LAMBDA0
    starts, conds = [A], []
    for b in range(0, len(Us), L):
        P11, P12, P21, P22 = eye.clone(), torch.zeros_like(eye), torch.zeros_like(eye), eye.clone()
        for U in Us[b:b + L]:
            U = U.to(dtype)
            G = U.T @ U
            # [[I + eps G, eps I], [G, I]] @ [[P11, P12], [P21, P22]]
            Y1, Y2 = G @ P11 + P21, G @ P12 + P22
            P11, P12, P21, P22 = P11 + EPS * Y1, P12 + EPS * Y2, Y1, Y2
        X = P11 @ A + P12
        Y = P21 @ A + P22
        conds.append(float(torch.linalg.cond(Y.double())))
        A = torch.linalg.solve(Y.T, X.T).T  # X Y^{-1}
        A = 0.5 * (A + A.T)
        starts.append(A)
    return starts, conds


def rel(x, ref):
    return float((x.double() - ref).norm() / ref.norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    res = {"K": K, "C": C, "chunks": NCHUNK, "lambda0": LAMBDA0, "nudge_eps": EPS, "cases": []}
    lead = torch.randn(K, dtype=torch.float64)
    for name, norm, skew in (("layer |u| = 1/sqrt(K)", K ** -0.5, 0.0), ("|u| = 1", 1.0, 0.0),
                             ("layer norm, u mostly along one direction", K ** -0.5, 10.0)):
        u = torch.randn(NCHUNK * C, K, dtype=torch.float64) + skew * lead / lead.norm()
        u = u / u.norm(dim=-1, keepdim=True) * norm
        Us = list(u.split(C))
        ref = serial_float64(Us)
        for L in (16, 64):
            for dtype in (torch.float32, torch.float64):
                starts, conds = blocked(Us, L, dtype)
                errs = [rel(a, ref[i * L]) for i, a in enumerate(starts)]
                case = {"u": name, "block": L, "dtype": str(dtype), "max_rel_err_A_block_starts": max(errs),
                        "rel_err_A_final": errs[-1], "cond_Y_max": max(conds), "cond_Y_median": sorted(conds)[len(conds) // 2]}
                res["cases"].append(case)
                print(case, flush=True)
        # the serial chain in fp32 for scale (one Woodbury step per chunk, as the Newton chain computes it)
        A = torch.eye(K) / LAMBDA0
        worst = 0.0
        for i, U in enumerate(Us):
            U = U.float()
            W = A @ U.T
            A = A - W @ torch.linalg.solve(torch.eye(C) + U @ W, W.T)
            A = 0.5 * (A + A.T) + EPS * torch.eye(K)
            worst = max(worst, rel(A, ref[i + 1]))
        case = {"u": name, "block": 0, "dtype": "torch.float32 (serial)", "max_rel_err_A_chunk_ends": worst,
                "rel_err_A_final": rel(A, ref[-1])}
        res["cases"].append(case)
        print(case, flush=True)
    if args.out:
        d = os.path.dirname(os.path.abspath(args.out))
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    sys.exit(main())
