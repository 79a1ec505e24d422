"""The mixer layers: decoding with a cache equals the whole-sequence forward (float64), the VLA
layer computes SPEC §4 exactly, the baselines compute SPEC §5, bad arguments raise ValueError."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import rel_err
from vla.layers import MIXERS, DeltaNet, LinearAttention, SoftmaxAttention, VariationalLinearAttention
from vla.ops import naive_recurrent_vla

D_MODEL, HEADS = 16, 2
# float64 throughout: the decoded and whole-sequence paths run the same arithmetic in a different
# grouping (the naive op loops over tokens either way), so they agree to rounding, ~1e-15 relative;
# 1e-10 leaves room for the error growth over a few dozen steps while a wrong offset, nudge or
# running sum (errors of order 1e-3 and up) fails.
TOL = 1e-10

CASES = [
    ("vla", {}),
    ("vla", {"readout": "paper"}),
    ("vla", {"period": 16, "chunk_size": 16}),  # nudges at 16 and 32 fall inside the decoded parts
    ("deltanet", {}),
    ("linear_attn", {}),
    ("softmax", {}),
]


def make(name, **kw):
    torch.manual_seed(1)
    return MIXERS[name](D_MODEL, HEADS, **kw).double()


@pytest.mark.parametrize("name,kw", CASES)
def test_decode_equals_full_forward(name, kw):
    layer = make(name, **kw)
    T = 36 if kw.get("period") == 16 else 13
    x = torch.randn(2, T, D_MODEL, dtype=torch.float64)
    full, _ = layer(x)
    # prefill 5 tokens, then 1 token at a time, then a longer piece, then 1 at a time again
    mid = (8, 11) if T == 13 else (18, 31)
    pieces = ([x[:, :5]] + [x[:, t:t + 1] for t in range(5, mid[0])] + [x[:, mid[0]:mid[1]]]
              + [x[:, t:t + 1] for t in range(mid[1], T)])
    cache, outs = None, []
    for p in pieces:
        y, cache = layer(p, cache=cache, use_cache=True)
        outs.append(y)
    stepped = torch.cat(outs, dim=1)
    assert cache.offset == T
    assert rel_err(stepped, full) < TOL


def test_cache_is_none_without_use_cache():
    layer = make("vla")
    y, cache = layer(torch.randn(1, 3, D_MODEL, dtype=torch.float64))
    assert cache is None and y.shape == (1, 3, D_MODEL)


def _heads(x, B, T, H=HEADS):
    return x.view(B, T, H, -1)


@pytest.mark.parametrize("readout", ["norm", "paper"])
def test_vla_layer_is_spec_section_4(readout):
    layer = make("vla", readout=readout)
    B, T, D = 2, 9, D_MODEL // HEADS
    x = torch.randn(B, T, D_MODEL, dtype=torch.float64)
    y, _ = layer(x)
    phi = lambda t: F.elu(t) + 1
    k_raw = x @ layer.k_proj.weight.T
    q = phi(_heads(x @ layer.q_proj.weight.T, B, T))
    k = phi(_heads(k_raw, B, T))
    v = _heads(x @ layer.v_proj.weight.T, B, T)
    w = _heads(k_raw @ layer.u_proj.weight.T, B, T)
    u = w / w.norm(dim=-1, keepdim=True) / math.sqrt(D)
    if readout == "norm":
        o, _ = naive_recurrent_vla(q, k, v, u, scale=D ** -0.5)
        o = o / o.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * layer.o_norm.weight
        merged = o.reshape(B, T, -1)
    else:
        o, _ = naive_recurrent_vla(q, k, v, u, scale=1.0)
        denom = torch.stack([(q[:, t] * k[:, : t + 1].sum(1)).sum(-1) for t in range(T)], dim=1)
        merged = F.layer_norm((o / denom.clamp_min(1e-6)[..., None]).reshape(B, T, -1), (D_MODEL,),
                              layer.o_norm.weight, layer.o_norm.bias, 1e-5)
    ref = merged @ layer.o_proj.weight.T
    assert rel_err(y, ref) < 1e-12


def test_deltanet_layer_is_spec_section_5():
    layer = make("deltanet")
    B, T, D = 2, 7, D_MODEL // HEADS
    x = torch.randn(B, T, D_MODEL, dtype=torch.float64)
    y, _ = layer(x)
    nrm = lambda t: t / t.norm(dim=-1, keepdim=True)
    q = nrm(F.silu(_heads(x @ layer.q_proj.weight.T, B, T)))
    k = nrm(F.silu(_heads(x @ layer.k_proj.weight.T, B, T)))
    v = _heads(x @ layer.v_proj.weight.T, B, T)
    beta = torch.sigmoid(x @ layer.b_proj.weight.T)
    S = torch.zeros(B, HEADS, D, D, dtype=torch.float64)
    outs = []
    for t in range(T):
        kt = k[:, t]
        S = S + beta[:, t, :, None, None] * kt[..., None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, kt))[..., None, :]
        outs.append(D ** -0.5 * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    o = torch.stack(outs, 1)
    o = o / o.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * layer.o_norm.weight
    assert rel_err(y, o.reshape(B, T, -1) @ layer.o_proj.weight.T) < 1e-12


def test_linear_attention_layer_is_normalised_linear_attention():
    layer = make("linear_attn")
    B, T, D = 1, 6, D_MODEL // HEADS
    x = torch.randn(B, T, D_MODEL, dtype=torch.float64)
    y, _ = layer(x)
    phi = lambda t: F.elu(t) + 1
    q = phi(_heads(x @ layer.q_proj.weight.T, B, T)).transpose(1, 2)
    k = phi(_heads(x @ layer.k_proj.weight.T, B, T)).transpose(1, 2)
    v = _heads(x @ layer.v_proj.weight.T, B, T).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)).tril()
    o = (scores / scores.sum(-1, keepdim=True)) @ v  # the quadratic form of the same thing
    o = o.transpose(1, 2)
    o = o / o.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * layer.o_norm.weight
    assert rel_err(y, o.reshape(B, T, -1) @ layer.o_proj.weight.T) < 1e-12


def test_softmax_layer_is_causal_softmax():
    layer = make("softmax")
    B, T, D = 2, 5, D_MODEL // HEADS
    x = torch.randn(B, T, D_MODEL, dtype=torch.float64)
    y, _ = layer(x)
    q, k, v = (_heads(x @ p.weight.T, B, T).transpose(1, 2) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
    assert rel_err(y, o @ layer.o_proj.weight.T) < 1e-12
    # causality: changing the last token leaves the earlier outputs unchanged
    x2 = x.clone()
    x2[:, -1] += 1
    assert torch.equal(layer(x2)[0][:, :-1], y[:, :-1])


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_modes_agree(name):
    layer = make(name)
    x = torch.randn(1, 20, D_MODEL, dtype=torch.float64)
    ref, _ = layer(x)
    layer.mode = "naive"
    naive, _ = layer(x)
    assert rel_err(ref, naive) < 1e-10


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_float32_backward(name):
    layer = MIXERS[name](D_MODEL, HEADS)
    x = torch.randn(2, 8, D_MODEL, requires_grad=True)
    y, _ = layer(x)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="hidden_size"):
        VariationalLinearAttention(15, 2)
    with pytest.raises(ValueError, match="num_heads"):
        DeltaNet(16, 0)
    with pytest.raises(ValueError, match="readout"):
        VariationalLinearAttention(16, 2, readout="softmax")
    with pytest.raises(ValueError, match="mode"):
        LinearAttention(16, 2, mode="fast")
    with pytest.raises(ValueError, match="mode"):
        SoftmaxAttention(16, 2, mode="fast")
    with pytest.raises(ValueError, match="lambda0"):
        VariationalLinearAttention(16, 2, lambda0=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        VariationalLinearAttention(16, 2, period=48)
    with pytest.raises(ValueError, match="chunk_size"):
        DeltaNet(16, 2, chunk_size=3)
    with pytest.raises(ValueError, match="backend"):
        VariationalLinearAttention(16, 2, backend="cuda")
    with pytest.raises(ValueError, match="feature_map"):
        VariationalLinearAttention(16, 2, feature_map="relu2")
    with pytest.raises(ValueError, match="x must"):
        VariationalLinearAttention(16, 2)(torch.randn(2, 3, 8))
