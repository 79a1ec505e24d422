"""The Newton chain's accuracy against the bound that CHAIN_SOLVER="auto" uses (vla/ops/vla/triton/chunk.py,
_chain_solver): for u of growing norm, the output's and the final A's relative errors of the Triton chunk
back end with the Cholesky and the Newton chain against the float64 loop (fp32 inputs, K = 32, T = 256,
chunks of 64). Runs on a CPU through Triton's interpreter (about a minute):

    python benchmarks/newton_bound_scan.py
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from vla.ops.vla.naive import naive_recurrent_vla  # noqa: E402
from vla.ops.vla.triton import chunk as tri  # noqa: E402

K, T, C = 32, 256, 64
HYPER = dict(lambda0=0.1, period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6)


def rel(x, ref):
    return float((x.double() - ref).norm() / ref.norm())


def main():
    torch.manual_seed(0)
    q, k, v, u0 = (torch.randn(1, T, 1, K, dtype=torch.float64) for _ in range(4))
    u0 = u0 / u0.norm(dim=-1, keepdim=True)
    lay = tri._layout(1, T, torch.zeros(1, dtype=torch.int64), None, C, HYPER["nudge_eps"], "cpu")
    for norm in (K ** -0.5, 0.5, 1.0, 2.0, 4.0, 8.0):
        u = u0 * norm
        ref, (_, A) = naive_recurrent_vla(q, k, v, u, scale=K ** -0.5, output_final_state=True, **HYPER)
        errs = {}
        for solver in ("cholesky", "newton"):
            tri.CHAIN_SOLVER = solver
            o, fin = tri.chunk_vla_triton(q.float(), k.float(), v.float(), u.float(), scale=K ** -0.5,
                                          output_final_state=True, offsets=torch.zeros(1, dtype=torch.int64),
                                          chunk_size=C, **HYPER)
            errs[solver] = (rel(o, ref), rel(fin[1], A))
        tri.CHAIN_SOLVER = "auto"
        args = (u.float(), None, lay, HYPER["lambda0"], HYPER["period"], HYPER["nudge_eps"])
        bound_pick, bound = tri._chain_solver(*args), tri._chain_bound(*args)
        print(f"|u| = {norm:.3f}  bound {bound:8.1f}  auto picks {bound_pick:8s}  cholesky: o {errs['cholesky'][0]:.1e} "
              f"A {errs['cholesky'][1]:.1e}  newton: o {errs['newton'][0]:.1e} A {errs['newton'][1]:.1e}", flush=True)


if __name__ == "__main__":
    main()
