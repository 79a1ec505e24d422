"""Linear attention (Katharopoulos et al. 2020), step by step: the baseline's definition.

``S_t = S_{t-1} + k_t v_t^T``, ``z_t = z_{t-1} + k_t``; with ``normalize=True`` (the paper's form)
``o_t = S_t^T q_t / max(q_t . z_t, eps)``, else ``o_t = scale * S_t^T q_t``. The feature map
(ELU + 1) is applied by the layer before calling the op.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..utils import check_hyper, check_inputs, compute_dtype, default_scale, run_varlen


def check_linear_attn_inputs(q, k, v, *, scale, eps, initial_state, cu_seqlens):
    check_hyper("eps", eps, positive=True)
    return check_inputs(q, k, v, initial_state=initial_state, state_shapes=("KV", "K"),
                        state_names=("S", "z"), cu_seqlens=cu_seqlens, scale=scale)


def naive_recurrent_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: Optional[float] = None,
    normalize: bool = True,
    eps: float = 1e-6,
    initial_state: Optional[Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
):
    """Linear attention, step by step. q, k: [B, T, H, K]; v: [B, T, H, V].

    ``initial_state`` is ``(S, z)`` with S [N, H, K, V] and z = running sum of keys [N, H, K].
    """
    info = check_linear_attn_inputs(q, k, v, scale=scale, eps=eps, initial_state=initial_state,
                                    cu_seqlens=cu_seqlens)
    scale = default_scale(scale, info.K)
    cdt = compute_dtype(q.dtype)
    S0 = z0 = None
    if initial_state is not None:
        S0, z0 = initial_state
    if S0 is None:
        S0 = torch.zeros(info.N, info.H, info.K, info.V, dtype=cdt, device=q.device)
    if z0 is None:
        z0 = torch.zeros(info.N, info.H, info.K, dtype=cdt, device=q.device)

    def dense(xs, states, offsets):
        q_, k_, v_ = (x.to(cdt) for x in xs)
        S, z = (x.to(cdt) for x in states)
        outs = []
        for t in range(q_.shape[1]):
            S = S + k_[:, t].unsqueeze(-1) * v_[:, t].unsqueeze(-2)
            z = z + k_[:, t]
            o = torch.einsum("nhkv,nhk->nhv", S, q_[:, t])
            if normalize:
                o = o / (q_[:, t] * z).sum(-1, keepdim=True).clamp_min(eps)
            else:
                o = scale * o
            outs.append(o)
        return torch.stack(outs, dim=1), (S, z)

    o, final = run_varlen(dense, info, (q, k, v), (S0, z0))
    return o.to(q.dtype), (final if output_final_state else None)
