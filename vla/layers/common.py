"""Pieces shared by the mixer layers: feature maps, per-head RMSNorm, argument checks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = ELU(x) + 1 > 0, the feature map of linear attention and of the VLA paper."""
    return F.elu(x) + 1.0


FEATURE_MAPS = {"elu": elu_plus_one, "identity": lambda x: x}


def feature_map(name: str):
    if name not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)}, got {name!r}")
    return FEATURE_MAPS[name]


def check_sizes(hidden_size: int, num_heads: int, head_dim):
    """Validate the constructor's sizes; returns the head size (hidden_size / num_heads by default)."""
    for name, value in (("hidden_size", hidden_size), ("num_heads", num_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if head_dim is None:
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        return hidden_size // num_heads
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int or None, got {head_dim!r}")
    return head_dim


def check_input(x: torch.Tensor, hidden_size: int):
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != hidden_size:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor [B, T, hidden_size={hidden_size}], got {shape}")


class HeadRMSNorm(nn.Module):
    """RMSNorm over each head's channels ([..., H, D] -> same), one learned gain shared by the heads."""

    def __init__(self, head_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.to(y.dtype)).to(x.dtype)


def init_baseline_mixer(layer: nn.Module, hidden_size: int, num_heads: int, head_dim, *, norm_eps: float,
                        mode: str, chunk_size: int, backend: str) -> None:
    """What the recurrent baselines (DeltaNet, linear attention) set up alike: sizes, back end,
    q/k/v/o projections without bias and the per-head output RMSNorm."""
    from . import _ops

    layer.head_dim = check_sizes(hidden_size, num_heads, head_dim)
    layer.hidden_size, layer.num_heads = hidden_size, num_heads
    # no fused recurrent kernel for the baselines: decoding runs the chunk form with T = 1
    layer.mode = _ops.check_mode(mode, ("auto", "naive", "chunk"))
    layer.chunk_size = _ops.check_chunk_size(chunk_size)
    layer.backend = _ops.check_backend(backend)  # chunk form: "torch", "triton" or "auto"
    inner = num_heads * layer.head_dim
    layer.q_proj = nn.Linear(hidden_size, inner, bias=False)
    layer.k_proj = nn.Linear(hidden_size, inner, bias=False)
    layer.v_proj = nn.Linear(hidden_size, inner, bias=False)
    layer.o_norm = HeadRMSNorm(layer.head_dim, eps=norm_eps)
    layer.o_proj = nn.Linear(inner, hidden_size, bias=False)
