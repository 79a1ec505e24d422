"""The Variational Linear Attention layer (SPEC §4)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..ops.utils import check_vla_hyper, l2norm
from . import _ops
from .cache import LayerCache
from .common import HeadRMSNorm, check_input, check_sizes
from .common import feature_map as get_feature_map

READOUTS = ("norm", "paper")


class VariationalLinearAttention(nn.Module):
    """Token mixer running the VLA recurrence per head.

    ``k_raw = W_k x``, ``q = phi(W_q x)``, ``k = phi(k_raw)``, ``v = W_v x``,
    ``u = l2normalize(W_u k_raw, per head) / sqrt(d_k)``; ``o = vla op(q, k, v, u)``.
    Readout ``"norm"`` (default): scale ``d_k**-0.5``, per-head RMSNorm, heads merged.
    Readout ``"paper"``: scale 1, each head divided by ``max(phi(q_t) . sum_{s<=t} phi(k_s), 1e-6)``,
    heads merged, LayerNorm. Then ``W_o``. No biases in the projections.

    ``mode`` picks the op's back end through ``vla.ops.vla`` ("auto", "naive", "chunk",
    "fused_recurrent"; "auto": the chunk form for training and prefill, the fused recurrent kernel
    for gradient-free decoding on CUDA), ``chunk_size`` the chunk form's chunk length.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: Optional[int] = None,
        *,
        readout: str = "norm",
        feature_map: str = "elu",
        lambda0: float = 0.1,
        period: int = 64,
        nudge_eps: float = 1e-3,
        delta_min: float = 1e-4,
        norm_eps: float = 1e-5,
        mode: str = "auto",
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        self.head_dim = check_sizes(hidden_size, num_heads, head_dim)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        check_vla_hyper(lambda0, period, nudge_eps, delta_min)
        self.hidden_size, self.num_heads, self.readout = hidden_size, num_heads, readout
        self.mode = _ops.check_mode(mode)
        self.chunk_size = _ops.check_chunk_size(chunk_size)
        self.backend = _ops.check_backend(backend)  # chunk form: "torch", "triton" or "auto"
        if nudge_eps > 0 and period % chunk_size:
            raise ValueError(f"chunk_size ({chunk_size}) must divide period ({period}) while nudges are on "
                             "(the chunk form applies the nudges at chunk boundaries)")
        self.phi = get_feature_map(feature_map)
        self.feature_map_name = feature_map
        self.lambda0, self.period, self.nudge_eps, self.delta_min = lambda0, period, nudge_eps, delta_min
        inner = num_heads * self.head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.u_proj = nn.Linear(inner, inner, bias=False)   # W_u, applied to k_raw
        if readout == "norm":
            self.o_norm = HeadRMSNorm(self.head_dim, eps=norm_eps)
        else:
            self.o_norm = nn.LayerNorm(inner, eps=norm_eps)
        self.o_proj = nn.Linear(inner, hidden_size, bias=False)

    def features(self, x: torch.Tensor):
        """q, k, v, u of SPEC §4, each [B, T, H, d_k] (exposed for the Jacobian experiment)."""
        B, T, _ = x.shape
        H, D = self.num_heads, self.head_dim
        k_raw = self.k_proj(x)
        q = self.phi(self.q_proj(x).view(B, T, H, D))
        k = self.phi(k_raw.view(B, T, H, D))
        v = self.v_proj(x).view(B, T, H, D)
        u = l2norm(self.u_proj(k_raw).view(B, T, H, D)) / D ** 0.5
        return q, k, v, u

    def op_kwargs(self):
        scale = 1.0 if self.readout == "paper" else self.head_dim ** -0.5
        return dict(lambda0=self.lambda0, scale=scale, period=self.period,
                    nudge_eps=self.nudge_eps, delta_min=self.delta_min)

    def forward(self, x: torch.Tensor, cache: Optional[LayerCache] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[LayerCache]]:
        """x: [B, T, hidden_size] -> (y [B, T, hidden_size], cache or None).

        With ``cache`` (from a previous call) the tokens continue that sequence; with
        ``use_cache=True`` the returned cache continues after these tokens.
        """
        check_input(x, self.hidden_size)
        B, T, _ = x.shape
        q, k, v, u = self.features(x)
        offset = cache.offset if cache is not None else 0
        o, final = _ops.vla_op(self.mode, self.chunk_size, self.backend)(
            q, k, v, u, **self.op_kwargs(),
            initial_state=cache.state if cache is not None else None,
            output_final_state=use_cache, offset=offset)
        key_sum = None
        if self.readout == "paper":
            ksum = torch.cumsum(k, dim=1)
            if cache is not None and cache.key_sum is not None:
                ksum = ksum + cache.key_sum.unsqueeze(1).to(ksum.dtype)
            o = o / (q * ksum).sum(-1, keepdim=True).clamp_min(1e-6)
            key_sum = ksum[:, -1]
            y = self.o_norm(o.reshape(B, T, -1))
        else:
            y = self.o_norm(o).reshape(B, T, -1)
        new_cache = LayerCache(tuple(final), offset + T, key_sum) if use_cache else None
        return self.o_proj(y), new_cache
