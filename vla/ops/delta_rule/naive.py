"""DeltaNet's recurrence (Schlag et al. 2021; Yang et al. 2024), step by step: the baseline's definition.

``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``, ``o_t = scale * S_t^T q_t``. Keys are used as
given (the DeltaNet layer l2-normalises them before calling the op, as flash-linear-attention does).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..utils import OffsetLike, check_inputs, compute_dtype, default_scale, run_varlen


def check_delta_rule_inputs(q, k, v, beta, *, scale, initial_state, cu_seqlens):
    return check_inputs(q, k, v, head_like={"beta": beta}, initial_state=initial_state,
                        state_shapes=("KV",), state_names=("S",), cu_seqlens=cu_seqlens, scale=scale)


def naive_recurrent_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: Optional[float] = None,
    initial_state: Optional[Tuple[Optional[torch.Tensor]]] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
):
    """DeltaNet, step by step. q, k: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H].

    ``initial_state`` is ``(S,)`` with S [N, H, K, V]; the final state likewise.
    """
    if isinstance(initial_state, torch.Tensor):
        initial_state = (initial_state,)
    info = check_delta_rule_inputs(q, k, v, beta, scale=scale, initial_state=initial_state,
                                   cu_seqlens=cu_seqlens)
    scale = default_scale(scale, info.K)
    cdt = compute_dtype(q.dtype)
    S0 = initial_state[0] if initial_state is not None else None
    if S0 is None:
        S0 = torch.zeros(info.N, info.H, info.K, info.V, dtype=cdt, device=q.device)

    def dense(xs, states, offsets):
        q_, k_, v_, b_ = (x.to(cdt) for x in xs)
        (S,) = states
        S = S.to(cdt)
        outs = []
        for t in range(q_.shape[1]):
            kt = k_[:, t]
            err = v_[:, t] - torch.einsum("nhkv,nhk->nhv", S, kt)
            S = S + (b_[:, t, :, None] * kt).unsqueeze(-1) * err.unsqueeze(-2)
            outs.append(scale * torch.einsum("nhkv,nhk->nhv", S, q_[:, t]))
        return torch.stack(outs, dim=1), (S,)

    o, final = run_varlen(dense, info, (q, k, v, beta), (S0,))
    return o.to(q.dtype), (final if output_final_state else None)
