"""Chunk forms of the baselines (sharing VLA's phase 2) against their naive definitions."""

import pytest
import torch

from tests.helpers import vla_inputs
from vla.ops import (chunk_delta_rule, chunk_linear_attn, delta_rule, linear_attn, naive_recurrent_delta_rule,
                     naive_recurrent_linear_attn)


@pytest.mark.parametrize("T,C", [(50, 16), (64, 32), (130, 64)])
def test_delta_rule_chunk_matches_naive(T, C):
    B, H, K, V = 2, 2, 8, 5
    q, k, v, _ = vla_inputs(B, T, H, K, V, requires_grad=True)
    beta = torch.rand(B, T, H, dtype=torch.float64, requires_grad=True)
    S0 = torch.randn(B, H, K, V, dtype=torch.float64, requires_grad=True)
    outs = []
    for fn in (naive_recurrent_delta_rule, lambda *a, **kw: chunk_delta_rule(*a, chunk_size=C, **kw)):
        kn = k / k.norm(dim=-1, keepdim=True)
        o, (S,) = fn(q, kn, v, beta, initial_state=(S0,), output_final_state=True)
        loss = (o * torch.cos(o)).sum() + S.pow(2).sum()
        outs.append((o, S, torch.autograd.grad(loss, (q, k, v, beta, S0))))
    (o1, S1, g1), (o2, S2, g2) = outs
    assert (o1 - o2).abs().max() < 1e-10 and (S1 - S2).abs().max() < 1e-10
    for a, b in zip(g1, g2):
        assert (a - b).abs().max() < 1e-8


def test_delta_rule_chunk_varlen():
    lens = [3, 33, 20]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist())
    q, k, v, _ = vla_inputs(1, sum(lens), 2, 8, 4)
    k = k / k.norm(dim=-1, keepdim=True)
    beta = torch.rand(1, sum(lens), 2, dtype=torch.float64)
    a = naive_recurrent_delta_rule(q, k, v, beta, cu_seqlens=cu, output_final_state=True)
    b = delta_rule(q, k, v, beta, cu_seqlens=cu, output_final_state=True, chunk_size=16)
    assert (a[0] - b[0]).abs().max() < 1e-10 and (a[1][0] - b[1][0]).abs().max() < 1e-10


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_attn_chunk_matches_naive(normalize):
    B, T, H, K, V = 2, 70, 2, 6, 4
    q, k, v, _ = vla_inputs(B, T, H, K, V, requires_grad=True)
    st = (torch.randn(B, H, K, V, dtype=torch.float64), torch.rand(B, H, K, dtype=torch.float64))
    res = []
    for fn in (naive_recurrent_linear_attn, lambda *a, **kw: chunk_linear_attn(*a, chunk_size=16, **kw)):
        fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
        o, (S, z) = fn(fq, fk, v, normalize=normalize, initial_state=st, output_final_state=True)
        res.append((o, S, z, torch.autograd.grad(o.sin().sum(), (q, k, v))))
    (o1, S1, z1, g1), (o2, S2, z2, g2) = res
    assert (o1 - o2).abs().max() < 1e-10 and (S1 - S2).abs().max() < 1e-10 and (z1 - z2).abs().max() < 1e-10
    for a, b in zip(g1, g2):
        assert (a - b).abs().max() < 1e-8
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    o3, _ = linear_attn(fq, fk, v, normalize=normalize, initial_state=st, mode="naive")
    assert (o3 - o1).abs().max() < 1e-12


def test_baseline_dispatch_rejects_fused_mode():
    q, k, v, _ = vla_inputs(1, 8, 1, 4, 4)
    with pytest.raises(ValueError, match="fused_recurrent"):
        delta_rule(q, k, v, torch.ones(1, 8, 1, dtype=torch.float64), mode="fused_recurrent")
    with pytest.raises(ValueError, match="backend must be"):
        chunk_delta_rule(q, k, v, torch.ones(1, 8, 1, dtype=torch.float64), backend="triton")


def test_delta_rule_fla_backend_refusals():
    # flash-linear-attention's kernel takes bf16 / fp16 CUDA tensors only: backend="fla" says so by name
    # (fp32, or a CPU tensor), and backend="auto" falls back to the PyTorch chunk form there
    q, k, v, _ = vla_inputs(1, 20, 2, 8, 8)
    beta = torch.rand(1, 20, 2, dtype=torch.float64)
    for dtype in (torch.float32, torch.bfloat16):
        x = [t.to(dtype) for t in (q, k, v, beta)]
        with pytest.raises(ValueError, match="backend='fla' needs bf16 or fp16 CUDA tensors"):
            chunk_delta_rule(*x, backend="fla")
        o, _ = chunk_delta_rule(*x, backend="auto")
        assert o.dtype == dtype and torch.isfinite(o.float()).all()
