"""The PyTorch chunk forms fill buffers in place when autograd is off: same results as the autograd
path, and the caller's tensors are left untouched."""

import torch

from tests.helpers import vla_inputs
from vla.ops import chunk_delta_rule, chunk_linear_attn, chunk_vla


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
