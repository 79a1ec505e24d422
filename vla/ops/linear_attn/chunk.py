"""Linear attention in chunkwise form: phase 2 of SPEC §3 without the delta correction.

The normaliser's running key sum z rides along as one extra value column of ones, so the state
``[S | z]`` and the numerator and denominator come out of the same products.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..common.chunk_delta import chunk_generalized_delta, from_chunks, to_chunks
from ..utils import ChunkLayout, check_chunk_size, compute_dtype, default_scale
from .naive import check_linear_attn_inputs


def chunk_linear_attn(
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
    chunk_size: int = 64,
    backend: str = "auto",
):
    """Chunkwise linear attention; same arguments and results as ``naive_recurrent_linear_attn``."""
    info = check_linear_attn_inputs(q, k, v, scale=scale, eps=eps, initial_state=initial_state,
                                    cu_seqlens=cu_seqlens)
    check_chunk_size(chunk_size, 1, 0.0)
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend must be 'auto' or 'torch', got {backend!r}")
    scale = default_scale(scale, info.K)
    cdt = compute_dtype(q.dtype)
    S0 = z0 = None
    if initial_state is not None:
        S0, z0 = initial_state
    if S0 is None:
        S0 = torch.zeros(info.N, info.H, info.K, info.V, dtype=cdt, device=q.device)
    if z0 is None:
        z0 = torch.zeros(info.N, info.H, info.K, dtype=cdt, device=q.device)
    layout = ChunkLayout(info, chunk_size, q.device)
    v_aug = torch.cat([v.to(cdt), torch.ones_like(v[..., :1], dtype=cdt)], dim=-1)
    qc, kc, vc = (to_chunks(layout.pad(x), chunk_size) for x in (q.to(cdt), k.to(cdt), v_aug))
    state0 = torch.cat([S0.to(cdt), z0.to(cdt).unsqueeze(-1)], dim=-1)
    o_aug, state = chunk_generalized_delta(qc, kc, kc, vc, state0, scale=1.0, delta=False)
    o_aug = layout.unpad(from_chunks(o_aug, info.N))
    num, den = o_aug[..., :-1], o_aug[..., -1:]
    o = num / den.clamp_min(eps) if normalize else scale * num
    S, z = state[..., :-1], state[..., -1]
    return o.to(q.dtype), ((S, z) if output_final_state else None)
