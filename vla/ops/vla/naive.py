"""The VLA recurrence of SPEC §1, in code: the definition every other back end is checked against.

A plain loop over time, batched over sequences and heads, float64-capable and differentiable by
autograd. Nothing here is optimised beyond batching; read it next to SPEC.md §1.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..utils import (
    OffsetLike,
    check_inputs,
    check_vla_hyper,
    compute_dtype,
    default_scale,
    l2norm,
    run_varlen,
)

VLA_DEFAULTS = dict(lambda0=0.1, period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6)


# What the Triton chunk back end's CHAIN_SOLVER="auto" needs: u's largest squared row norm and a bound on the
# initial A's spectral norm (vla.ops.utils.finite_witness), measured in the finiteness check's one pass
CHAIN_BOUND_WITNESSES = {"u": "row_norm2", "initial_state A": "norm2_bound"}


def check_vla_inputs(q, k, v, u, *, lambda0, scale, period, nudge_eps, delta_min, eps,
                     initial_state, offset, cu_seqlens, measure_norms=False, defer_finite=False):
    """The one argument checker shared by every VLA back end. ``measure_norms``: also measure
    CHAIN_BOUND_WITNESSES (into ``SeqInfo.norms``), for the Triton chunk back end. ``defer_finite``: leave the
    finiteness check to be resolved by the caller (check_inputs)."""
    check_vla_hyper(lambda0, period, nudge_eps, delta_min, eps)
    return check_inputs(
        q, k, v, key_like={"u": u}, initial_state=initial_state, state_shapes=("KV", "KK"),
        state_names=("S", "A"), cu_seqlens=cu_seqlens, offset=offset, scale=scale,
        witnesses=CHAIN_BOUND_WITNESSES if measure_norms else None, defer_finite=defer_finite,
    )


def initial_vla_state(info, initial_state, lambda0: float, dtype, device):
    """(S0, A0) in the compute dtype: zeros and I / lambda0 unless given."""
    N, H, K, V = info.N, info.H, info.K, info.V
    S0 = A0 = None
    if initial_state is not None:
        S0, A0 = initial_state
    if S0 is None:
        S0 = torch.zeros(N, H, K, V, dtype=dtype, device=device)
    if A0 is None:
        A0 = torch.eye(K, dtype=dtype, device=device).expand(N, H, K, K) / lambda0
    return S0.to(dtype), A0.to(dtype)


def vla_step(S, A, q, k, v, u, *, scale, nudge, nudge_eps, delta_min, eps):
    """One token of SPEC §1 for a batch of [N, H] heads.

    S: [N, H, K, V], A: [N, H, K, K]; q, k, u: [N, H, K]; v: [N, H, V]; nudge: bool [N] (whether
    this token's absolute position is a multiple of the period; kept on the CPU so that no device
    synchronisation is needed). Returns (o, S, A).
    """
    z = torch.einsum("nhij,nhj->nhi", A, u)                              # A u
    denom = (1 + (u * z).sum(-1)).clamp_min(delta_min)                  # Sherman-Morrison denominator
    A = A - z.unsqueeze(-1) * z.unsqueeze(-2) / denom[..., None, None]  # A <- A - z z^T / delta
    k_hat = l2norm(k, eps)                                               # unit read key
    a = torch.einsum("nhij,nhj->nhi", A, k_hat)                         # A k_hat
    write_dir = l2norm(a, eps)                                           # unit write direction
    read = torch.einsum("nhkv,nhk->nhv", S, k_hat)                      # S^T k_hat
    S = S + write_dir.unsqueeze(-1) * (v - read).unsqueeze(-2)          # delta rule
    o = scale * torch.einsum("nhkv,nhk->nhv", S, q)                     # read after the write
    if nudge_eps > 0 and bool(nudge.any()):
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        A = A + (nudge_eps * nudge.to(device=A.device, dtype=A.dtype))[:, None, None, None] * eye
    return o, S, A


def naive_recurrent_vla(
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
):
    """Variational linear attention, step by step (SPEC §1).

    Args:
        q, k, u: [B, T, H, K]; v: [B, T, H, V]. ``u`` is the penalty direction.
        initial_state: ``(S, A)`` with S [N, H, K, V] and A [N, H, K, K] (either may be None).
        offset: tokens each sequence has already consumed (int, or one per sequence).
        cu_seqlens: [N+1] boundaries of packed sequences (B must be 1).
    Returns:
        ``(o, final_state)``: o [B, T, H, V] in q's dtype; final_state ``(S, A)`` in the compute dtype
        (float64 for float64 input, float32 otherwise) when ``output_final_state``, else None.
    """
    info = check_vla_inputs(q, k, v, u, lambda0=lambda0, scale=scale, period=period,
                            nudge_eps=nudge_eps, delta_min=delta_min, eps=eps,
                            initial_state=initial_state, offset=offset, cu_seqlens=cu_seqlens)
    scale = default_scale(scale, info.K)
    cdt = compute_dtype(q.dtype)
    S0, A0 = initial_vla_state(info, initial_state, lambda0, cdt, q.device)

    def dense(xs, states, offsets):
        q_, k_, v_, u_ = (x.to(cdt) for x in xs)
        S, A = states
        T = q_.shape[1]
        outs = []
        for t in range(T):
            nudge = (offsets + t + 1) % period == 0
            o, S, A = vla_step(S, A, q_[:, t], k_[:, t], v_[:, t], u_[:, t], scale=scale, nudge=nudge,
                               nudge_eps=nudge_eps, delta_min=delta_min, eps=eps)
            outs.append(o)
        o = torch.stack(outs, dim=1) if outs else v_.new_zeros(v_.shape)
        return o, (S, A)

    o, (S, A) = run_varlen(dense, info, (q, k, v, u), (S0, A0))
    return o.to(q.dtype), ((S, A) if output_final_state else None)
