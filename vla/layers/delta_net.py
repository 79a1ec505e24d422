"""DeltaNet (Schlag et al. 2021; Yang et al. 2024) as SPEC §5 defines it."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.utils import l2norm
from . import _ops
from .cache import LayerCache
from .common import check_input, init_baseline_mixer


class DeltaNet(nn.Module):
    """``q, k = l2norm(SiLU(W x))`` per head, ``beta = sigmoid(W_beta x)`` per head, ``v = W_v x``;
    ``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``, ``o_t = d_k**-0.5 S_t^T q_t``; per-head
    RMSNorm, heads merged, ``W_o``. (flash-linear-attention's layer adds short convolutions; this
    one does not, so that it differs from the VLA layer only in the recurrence.)
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: Optional[int] = None, *,
                 norm_eps: float = 1e-5, mode: str = "auto", chunk_size: int = 64,
                 backend: str = "auto"):
        super().__init__()
        init_baseline_mixer(self, hidden_size, num_heads, head_dim, norm_eps=norm_eps, mode=mode,
                            chunk_size=chunk_size, backend=backend)
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)

    def forward(self, x: torch.Tensor, cache: Optional[LayerCache] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[LayerCache]]:
        check_input(x, self.hidden_size)
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        q = l2norm(F.silu(self.q_proj(x).view(B, T, H, D)))
        k = l2norm(F.silu(self.k_proj(x).view(B, T, H, D)))
        v = self.v_proj(x).view(B, T, H, D)
        beta = torch.sigmoid(self.b_proj(x))
        o, final = _ops.delta_rule_op(self.mode, self.chunk_size, self.backend)(
            q, k, v, beta, scale=D ** -0.5,
            initial_state=cache.state if cache is not None else None, output_final_state=use_cache)
        y = self.o_norm(o).reshape(B, T, -1)
        offset = cache.offset if cache is not None else 0
        new_cache = LayerCache(tuple(final), offset + T) if use_cache else None
        return self.o_proj(y), new_cache
