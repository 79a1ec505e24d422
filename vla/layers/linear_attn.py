"""Linear attention (Katharopoulos et al. 2020) as SPEC §5 defines it."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from . import _ops
from .cache import LayerCache
from .common import check_input, elu_plus_one, init_baseline_mixer


class LinearAttention(nn.Module):
    """``q, k = phi(W x)`` with phi = ELU+1, ``v = W_v x``; ``S_t = S_{t-1} + k_t v_t^T``,
    ``o_t = S_t^T q_t / (q_t . sum_{s<=t} k_s)`` (normalised); per-head RMSNorm, heads merged, ``W_o``.
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: Optional[int] = None, *,
                 norm_eps: float = 1e-5, mode: str = "auto", chunk_size: int = 64,
                 backend: str = "auto"):
        super().__init__()
        init_baseline_mixer(self, hidden_size, num_heads, head_dim, norm_eps=norm_eps, mode=mode,
                            chunk_size=chunk_size, backend=backend)

    def forward(self, x: torch.Tensor, cache: Optional[LayerCache] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[LayerCache]]:
        check_input(x, self.hidden_size)
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        q = elu_plus_one(self.q_proj(x).view(B, T, H, D))
        k = elu_plus_one(self.k_proj(x).view(B, T, H, D))
        v = self.v_proj(x).view(B, T, H, D)
        o, final = _ops.linear_attn_op(self.mode, self.chunk_size, self.backend)(
            q, k, v, normalize=True,
            initial_state=cache.state if cache is not None else None, output_final_state=use_cache)
        y = self.o_norm(o).reshape(B, T, -1)
        offset = cache.offset if cache is not None else 0
        new_cache = LayerCache(tuple(final), offset + T) if use_cache else None
        return self.o_proj(y), new_cache
