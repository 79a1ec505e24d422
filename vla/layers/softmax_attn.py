"""Causal softmax attention through ``scaled_dot_product_attention`` (SPEC §5)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import LayerCache
from .common import check_input, check_sizes


class SoftmaxAttention(nn.Module):
    """Multi-head causal softmax attention, no biases; the cache holds past keys and values.

    ``mode``, ``chunk_size`` and ``backend`` are accepted for the shared constructor signature; SDPA picks its own kernel
    (FlashAttention on a GPU).
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: Optional[int] = None, *,
                 mode: str = "auto", chunk_size: int = 64,
                 backend: str = "auto"):
        super().__init__()
        self.head_dim = check_sizes(hidden_size, num_heads, head_dim)
        if mode not in ("auto", "naive", "chunk", "fused_recurrent"):
            raise ValueError(f"mode must be one of ('auto', 'naive', 'chunk', 'fused_recurrent'), got {mode!r}")
        self.hidden_size, self.num_heads, self.mode = hidden_size, num_heads, mode
        inner = num_heads * self.head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cache: Optional[LayerCache] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[LayerCache]]:
        check_input(x, self.hidden_size)
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        q, k, v = (p(x).view(B, T, H, D).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        past = 0
        if cache is not None:
            past_k, past_v = cache.state
            past = past_k.shape[2]
            k = torch.cat([past_k.to(k.dtype), k], dim=2)
            v = torch.cat([past_v.to(v.dtype), v], dim=2)
        if past == 0:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            o = F.scaled_dot_product_attention(q, k, v)
        else:  # query i sits at absolute position past + i and sees keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = o.transpose(1, 2).reshape(B, T, H * D)
        offset = cache.offset if cache is not None else 0
        new_cache = LayerCache((k, v), offset + T) if use_cache else None
        return self.o_proj(y), new_cache
