"""The exact chunkwise-parallel form of VLA (SPEC §3), in PyTorch, and the ``chunk_vla`` entry point.

Phase 1 (this file) runs the penalty inverse A through the chunks with one C x C Cholesky per chunk
(Woodbury on the chunk) and yields every token's write direction; phase 2
(``vla.ops.common.chunk_delta``) is the generalized delta rule with read key k_hat and write key
alpha_hat. Both run in float32 (float64 for float64 input). Differentiable by autograd; nothing of
T x K^2 elements is stored (A is kept once per chunk). The two phases run segment by segment
(``SEGMENT_CHUNKS`` chunks at a time, (S, A) carried across), which keeps temporaries small.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..common.chunk_delta import chunk_generalized_delta, from_chunks, to_chunks
from ..utils import (ChunkLayout, OffsetLike, check_chunk_size, compute_dtype, default_scale, l2norm,
                     needs_grad)
from .naive import check_vla_inputs, initial_vla_state


def penalty_inverse_chain(u, A0, nudge, *, nudge_eps: float):
    """The sequential half of phase 1 (SPEC §3): A carried through the chunks by Woodbury.

    u: chunk-major [nc, N*H, C, K]; A0: [N, H, K, K] (symmetric); nudge: bool [N, nc], whether the
    chunk ends on a multiple of the period. Returns (A at each chunk start [nc, N*H, K, K], each chunk's
    Z^T [nc, N*H, C, K] with rows z_i / sqrt(delta_i), A after the last chunk [N, H, K, K]).

    Per chunk the loop does only what the chain needs: two products for M = I + U A U^T, one Cholesky
    M = R R^T, one triangular solve Z^T = R^{-1} U A, and the update A - Z Z^T. Without autograd the
    results are written straight into preallocated buffers.
    """
    nc, NH, C, K = u.shape
    N, H = A0.shape[:2]
    A = A0.reshape(NH, K, K)
    # per chunk, per (sequence, head) row of the batch: the nudge added at the end of the chunk
    nudge_add = (nudge.to(u.device, u.dtype) * nudge_eps).repeat_interleave(H, dim=0).t().unsqueeze(-1)  # [nc, N*H, 1]
    fires = nudge.any(0).tolist() if nudge_eps > 0 else [False] * nc  # one host sync, not one per chunk
    grad = needs_grad(u, A0)
    if grad:
        starts, zts = [], []
    else:  # buffers of exactly T/C chunks (the final A is a separate small tensor)
        starts, zts = u.new_empty(nc, NH, K, K), u.new_empty(nc, NH, C, K)
        if nc:
            starts[0] = A
    for c in range(nc):
        U = u[c]                                                        # [NH, C, K]
        G = torch.bmm(U, A)                                             # rows (A_c u_i)^T (A symmetric)
        M = torch.bmm(G, U.transpose(-1, -2))
        M.diagonal(dim1=-2, dim2=-1).add_(1)                            # I + U A_c U^T: SPD, eigenvalues >= 1
        # M is symmetric: its transpose is the column-major operand LAPACK wants (no transposing copy),
        # and the lower factor R comes back column-major, which the left solve takes as it is.
        R = torch.linalg.cholesky_ex(M.transpose(-1, -2)).L             # M = R R^T, R_ii = sqrt(delta_i)
        Zt = torch.linalg.solve_triangular(R, G, upper=False, out=None if grad else zts[c])  # rows z_i / sqrt(delta_i)
        if grad:
            starts.append(A)
            zts.append(Zt)
        A = torch.baddbmm(A, Zt.transpose(-1, -2), Zt, alpha=-1,       # Woodbury on the chunk
                          out=None if grad or c + 1 == nc else starts[c + 1])
        if fires[c]:
            A.diagonal(dim1=-2, dim2=-1).add_(nudge_add[c])            # A + nudge I (A is a fresh tensor)
    if grad:
        starts = torch.stack(starts) if nc else u.new_empty(0, NH, K, K)
        zts = torch.stack(zts) if nc else u.new_empty(0, NH, C, K)
    return starts, zts, A.reshape(N, H, K, K)


def write_directions(u, k_hat, A0, nudge, *, nudge_eps: float, eps: float):
    """Phase 1 of SPEC §3 over all chunks.

    u, k_hat: chunk-major [nc, N*H, C, K]; A0: [N, H, K, K] (symmetric); nudge: bool [N, nc], whether
    the chunk ends on a multiple of the period. Returns (write_dir [nc, N*H, C, K], A [N, H, K, K]
    after the last chunk).
    """
    nc, NH, C, K = u.shape
    grad = needs_grad(u, k_hat, A0)
    starts, zt, A_final = penalty_inverse_chain(u, A0, nudge, nudge_eps=nudge_eps)
    if nc == 0:
        return torch.zeros_like(u), A_final
    # Parallel part, all chunks at once: row t of a = A_t k_hat_t = k_hat_t A_c - sum_{i<=t} (k_hat_t.z_i) z_i
    # (in-place steps act on fresh products that autograd does not keep)
    # (3-d bmm on flattened chunks: a 4-d matmul would copy the transposed operand)
    kf, zf = k_hat.flatten(0, 1), zt.flatten(0, 1)
    kz = torch.bmm(kf, zf.transpose(-1, -2)).tril_()                    # (k_hat_t . z_i) for i <= t
    a = torch.bmm(kf, starts.flatten(0, 1)).baddbmm_(kz, zf, alpha=-1)
    a = l2norm(a, eps) if grad else a.div_(a.norm(dim=-1, keepdim=True).clamp_min_(eps))
    return a.view(nc, NH, C, K), A_final


# Chunks per segment: the chunk form runs phase 1 and phase 2 over one segment of chunks at a time,
# carrying (S, A) across segments. Results are those of one pass over all chunks, but the T-sized
# temporaries shrink to segment size (on a CPU, fresh memory costs page faults, and a segment's
# working set stays in cache).
SEGMENT_CHUNKS = 8


def chunk_vla_torch(q, k, v, u, info, S0, A0, *, scale, period, nudge_eps, eps, chunk_size,
                    segment_chunks: Optional[int] = None):
    """The PyTorch chunk back end on validated inputs; returns (o, S, A) with S, A in compute dtype."""
    cdt = compute_dtype(q.dtype)
    C = chunk_size
    layout = ChunkLayout(info, C, q.device)
    q, k, v, u = (layout.pad(x.to(cdt)) for x in (q, k, v, u))      # [N, L, H, D]
    ends, real = layout.chunk_end_positions()
    nudge = (ends % period == 0) & real
    N, L, H, V = v.shape
    grad = needs_grad(q, k, v, u, S0, A0)
    o = [] if grad else v.new_empty(N, L, H, V)
    S, A = S0, A0
    segment_chunks = segment_chunks or SEGMENT_CHUNKS
    for c0 in range(0, layout.nc, segment_chunks):
        c1 = min(layout.nc, c0 + segment_chunks)
        rows = slice(c0 * C, c1 * C)
        qc, kc, vc, uc = (to_chunks(x[:, rows], C) for x in (q, k, v, u))
        k_hat = l2norm(kc, eps)
        write_dir, A = write_directions(uc, k_hat, A, nudge[:, c0:c1], nudge_eps=nudge_eps, eps=eps)
        oc, S = chunk_generalized_delta(qc, k_hat, write_dir, vc, S, scale=scale, delta=True)
        if grad:
            o.append(from_chunks(oc, N))
        else:  # straight into the output, [N, L, H, V]
            o[:, rows].view(N, c1 - c0, C, H, V).copy_(oc.view(c1 - c0, N, H, C, V).permute(1, 0, 3, 2, 4))
    if grad:
        o = torch.cat(o, dim=1) if len(o) > 1 else o[0]
    return layout.unpad(o), S, A


def chunk_vla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    *,
    lambda0: float = 0.1,
    scale: Optional[float] = None,
    period: int = 64,
    nudge_eps: float = 1e-3,
    delta_min: float = 1e-4,
    eps: float = 1e-6,
    initial_state: Optional[Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]] = None,
    output_final_state: bool = False,
    offset: OffsetLike = 0,
    cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
    backend: str = "auto",
):
    """Chunkwise-parallel VLA (SPEC §3): same arguments and results as ``naive_recurrent_vla``.

    ``chunk_size``: 16, 32 or 64; ``period`` must be a multiple of it while nudges are on.
    ``backend``: "torch", "triton", or "auto" (Triton for CUDA tensors in fp32, bf16 or fp16 with
    K, V <= 64, or up to 128 in bf16 with chunk_size 64; PyTorch otherwise; ``TRITON_CHUNK_VERIFIED_ON_GPU = False``
    keeps it on PyTorch).
    The Sherman-Morrison clamp ``delta_min`` never binds in exact arithmetic (delta >= 1 for SPD A), and
    the chunk form does not apply it. The initial A is symmetrised (A is symmetric by definition).
    """
    # "auto": Triton on CUDA for the dtypes, head sizes and chunk sizes its kernels take, PyTorch elsewhere; the
    # norms that the Triton back end's chain solver reads are measured only where it runs, and there the finiteness
    # check is resolved after the kernels are launched (chunk_vla_triton's ``pending``)
    may_triton = backend == "triton" or (backend == "auto" and getattr(q, "is_cuda", False)
                                         and TRITON_CHUNK_VERIFIED_ON_GPU and isinstance(v, torch.Tensor)
                                         and _triton_takes(q.dtype, q.shape[-1], v.shape[-1], chunk_size))
    info = check_vla_inputs(q, k, v, u, lambda0=lambda0, scale=scale, period=period,
                            nudge_eps=nudge_eps, delta_min=delta_min, eps=eps,
                            initial_state=initial_state, offset=offset, cu_seqlens=cu_seqlens,
                            measure_norms=may_triton, defer_finite=may_triton)
    try:
        check_chunk_size(chunk_size, period, nudge_eps)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    except ValueError:
        if info.pending is not None:  # (a non-finite input is named first, as with the check resolved at once)
            info.pending.resolve()
        raise
    if backend == "auto":
        backend = "triton" if may_triton else "torch"
    scale = default_scale(scale, info.K)
    init = tuple(initial_state) if initial_state is not None else (None, None)
    if backend == "triton":  # (it symmetrises the initial A itself)
        from .triton.chunk import chunk_vla_triton

        return chunk_vla_triton(q, k, v, u, scale=scale, lambda0=lambda0, period=period, nudge_eps=nudge_eps,
                                delta_min=delta_min, eps=eps, initial_state=init,
                                output_final_state=output_final_state, offsets=info.offsets,
                                cu_seqlens=info.cu_seqlens, chunk_size=chunk_size, pending=info.pending)
    if init[1] is not None:  # A is symmetric by definition; gradients come back symmetrised
        init = (init[0], 0.5 * (init[1] + init[1].transpose(-1, -2)))
    cdt = compute_dtype(q.dtype)
    S0, A0 = initial_vla_state(info, init, lambda0, cdt, q.device)
    o, S, A = chunk_vla_torch(q, k, v, u, info, S0, A0, scale=scale, period=period, nudge_eps=nudge_eps,
                              eps=eps, chunk_size=chunk_size)
    return o.to(q.dtype), ((S, A) if output_final_state else None)


# The Triton chunk kernels passed their GPU checks (benchmarks/results/chunk_triton_NOTES.md says which
# build each file measured); set False to keep "auto" on the PyTorch chunk form everywhere.
TRITON_CHUNK_VERIFIED_ON_GPU = True


def _triton_takes(dtype: torch.dtype, K: int, V: int, chunk_size: int = 64) -> bool:
    """Whether the Triton chunk kernels can be imported and take these inputs (dtype, head sizes, chunk size)."""
    try:
        from .triton.chunk import refusal
    except Exception:
        return False
    return refusal(dtype, K, V, chunk_size) is None
