"""The largest squared row norm of a tensor in one Triton pass (the input check's witness for u on a GPU).

``torch.linalg.vector_norm(x, dim=-1).amax()`` took 0.26 ms for u of shape [4, 16384, 16, 64] (bf16) on an H200
(benchmarks/results/chunk_triton_v8c_profile.json), where reading its 134 MB once takes about 0.03 ms at the
H200's 4.8 TB/s: PyTorch's reduction over a last dimension of 64 keeps few threads busy.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ROWS = 128  # rows per program


@triton.jit
def _row_norm2_max(x, out, n_rows, K: tl.constexpr, BK: tl.constexpr, ROWS: tl.constexpr):
    """out[program] = the largest sum of squares over the program's ROWS rows, plus 0 x their total, so that a NaN
    or an Inf anywhere in the rows reaches out (a maximum alone may drop a NaN)."""
    pid = tl.program_id(0)
    r = pid.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, BK)
    m = (r < n_rows)[:, None] & (c < K)[None, :]
    v = tl.load(x + r[:, None] * K + c[None, :], mask=m, other=0.0).to(tl.float32)
    s = tl.sum(v * v, axis=1)
    tl.store(out + pid, tl.max(s, axis=0) + 0.0 * tl.sum(s, axis=0))


def row_norm2_max(x: torch.Tensor) -> torch.Tensor:
    """max over rows (the last dimension) of the squared L2 norm of x, in fp32, as a 0-d tensor; non-finite when
    any element of x is (or when a sum of squares overflows fp32)."""
    K = x.shape[-1]
    x2 = x.detach().contiguous().view(-1, K)
    n = x2.shape[0]
    parts = torch.empty(triton.cdiv(n, ROWS), dtype=torch.float32, device=x.device)
    _row_norm2_max[(parts.numel(),)](x2, parts, n, K=K, BK=triton.next_power_of_2(K), ROWS=ROWS, num_warps=4)
    return parts.amax()
