"""Shared test helpers: random inputs and an error metric."""

import torch


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error ||x - ref|| / ||ref||, as flash-linear-attention measures kernels."""
    x, ref = x.detach().double(), ref.detach().double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def vla_inputs(B=2, T=40, H=2, K=8, V=6, dtype=torch.float64, requires_grad=False, device="cpu"):
    """Random q, k, v, u of the layer's kind: u has norm about 1/sqrt(K) like the layer's."""
    q = torch.randn(B, T, H, K, dtype=dtype, device=device)
    k = torch.randn(B, T, H, K, dtype=dtype, device=device)
    v = torch.randn(B, T, H, V, dtype=dtype, device=device)
    u = torch.randn(B, T, H, K, dtype=dtype, device=device)
    u = u / u.norm(dim=-1, keepdim=True) / K ** 0.5
    xs = [q, k, v, u]
    if requires_grad:
        xs = [x.requires_grad_() for x in xs]
    return xs
