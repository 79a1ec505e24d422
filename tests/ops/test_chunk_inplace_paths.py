"""The PyTorch chunk forms fill buffers in place when autograd is off: same results as the autograd
path, and the caller's tensors are left untouched. VLA's chunk form runs over segments of chunks."""

import importlib

import pytest
import torch

from tests.helpers import vla_inputs
from vla.ops import chunk_delta_rule, chunk_linear_attn, chunk_vla, naive_recurrent_vla


def _both_paths(fn, inputs, **kw):
    """(result without autograd, result with autograd); checks the inputs are not modified."""
    before = [x.clone() for x in inputs]
    with torch.no_grad():
        plain = fn(*inputs, **kw)
    for x, b in zip(inputs, before):
        assert torch.equal(x, b)
    tracked = fn(*[x.detach().requires_grad_() for x in inputs], **kw)
    return plain, tracked


def _flat(res):
    o, states = res
    return [o] + [s for s in states]


def _assert_same(a, b, tol=1e-12):
    for x, y in zip(_flat(a), _flat(b)):
        assert (x - y.detach()).abs().max() <= tol


def test_vla_paths_agree_ragged_with_nudges():
    lens = [5, 70, 33]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int64)
    q, k, v, u = vla_inputs(1, sum(lens), 2, 8, 6)
    kw = dict(period=16, offset=[0, 3, 15], cu_seqlens=cu, output_final_state=True, nudge_eps=0.02, chunk_size=16)
    _assert_same(*_both_paths(chunk_vla, [q, k, v, u], **kw))


def test_vla_paths_agree_float32():
    q, k, v, u = vla_inputs(2, 130, 2, 16, 8, dtype=torch.float32)
    _assert_same(*_both_paths(chunk_vla, [q, k, v, u], output_final_state=True, chunk_size=32), tol=1e-4)


def test_delta_rule_paths_agree():
    q, k, v, _ = vla_inputs(2, 50, 2, 8, 5)
    k = k / k.norm(dim=-1, keepdim=True)
    beta = torch.rand(2, 50, 2, dtype=torch.float64)
    _assert_same(*_both_paths(chunk_delta_rule, [q, k, v, beta], output_final_state=True, chunk_size=16))


def test_linear_attn_paths_agree():
    q, k, v, _ = vla_inputs(2, 70, 2, 6, 4)
    q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    _assert_same(*_both_paths(chunk_linear_attn, [q, k, v], output_final_state=True, chunk_size=16))


def _spd(N, H, K):
    X = torch.randn(N, H, K, K, dtype=torch.float64)
    return X @ X.transpose(-1, -2) / K + 0.3 * torch.eye(K, dtype=torch.float64)


@pytest.mark.parametrize("segment", [1, 3])
def test_vla_segments_match_naive(monkeypatch, segment):
    # the chunk form runs over segments of SEGMENT_CHUNKS chunks, carrying (S, A): same results and
    # gradients as the step-by-step definition, ragged sequences, nudges and initial states included
    monkeypatch.setattr(importlib.import_module("vla.ops.vla.chunk"), "SEGMENT_CHUNKS", segment)
    H, K, V = 2, 8, 5
    lens = [5, 70, 1, 47]
    N = len(lens)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int64)
    inputs = vla_inputs(1, sum(lens), H, K, V, requires_grad=True)
    states = [torch.randn(N, H, K, V, dtype=torch.float64, requires_grad=True), _spd(N, H, K).requires_grad_()]
    kw = dict(period=16, offset=[0, 3, 15, 60], cu_seqlens=cu, nudge_eps=0.02, output_final_state=True,
              initial_state=tuple(states))
    with torch.no_grad():
        plain = chunk_vla(*inputs, chunk_size=16, **kw)
    res = []
    for fn in (naive_recurrent_vla, lambda *a, **k: chunk_vla(*a, chunk_size=16, **k)):
        o, (S, A) = fn(*inputs, **kw)
        torch.manual_seed(1)
        loss = (o * torch.randn_like(o)).sum() + (S * torch.randn_like(S)).sum() + (A * torch.randn_like(A)).sum()
        res.append(((o, (S, A)), torch.autograd.grad(loss, list(inputs) + states)))
    (ref, g_ref), (got, g_got) = res
    _assert_same(plain, ref, 1e-10)
    _assert_same(got, ref, 1e-10)
    for name, gc, gn in zip("q k v u S0 A0".split(), g_got, g_ref):
        if name == "A0":
            gn = 0.5 * (gn + gn.transpose(-1, -2))  # A is symmetric: the chunk op returns the symmetric part
        assert (gc - gn).abs().max() <= 1e-8 * max(1.0, gn.abs().max().item()), name
