"""The PyTorch chunk back end (SPEC §3) against the definition, naive_recurrent_vla, in float64."""

import pytest
import torch

from tests.helpers import rel_err, vla_inputs
from vla.ops import chunk_vla, naive_recurrent_vla


def _spd(B, H, K):
    X = torch.randn(B, H, K, K, dtype=torch.float64)
    return X @ X.transpose(-1, -2) / K + 0.3 * torch.eye(K, dtype=torch.float64)


def _assert_close(got, ref, tol):
    o, (S, A) = got
    o_r, (S_r, A_r) = ref
    assert (o - o_r).abs().max() <= tol
    assert (S - S_r).abs().max() <= tol
    assert (A - A_r).abs().max() <= tol


# (B, T, H, K, V, period, chunk_size, offset): chunk and period boundaries, partial chunks, K != V
CASES = [
    (2, 100, 2, 8, 6, 32, 16, 0),
    (2, 100, 2, 8, 6, 32, 16, 5),
    (1, 64, 1, 4, 4, 16, 16, 0),
    (3, 130, 2, 16, 8, 64, 32, 37),
    (1, 150, 2, 12, 20, 64, 64, 64),
    (2, 17, 3, 5, 3, 16, 16, 15),
]


@pytest.mark.parametrize("B,T,H,K,V,period,C,offset", CASES)
def test_forward_matches_naive_float64(B, T, H, K, V, period, C, offset):
    q, k, v, u = vla_inputs(B, T, H, K, V)
    kw = dict(period=period, offset=offset, initial_state=(torch.randn(B, H, K, V, dtype=torch.float64), _spd(B, H, K)),
              output_final_state=True, nudge_eps=0.01)
    _assert_close(chunk_vla(q, k, v, u, chunk_size=C, **kw), naive_recurrent_vla(q, k, v, u, **kw), 1e-10)


def test_defaults_and_no_initial_state():
    q, k, v, u = vla_inputs(2, 200, 2, 8, 8)
    _assert_close(chunk_vla(q, k, v, u, output_final_state=True), naive_recurrent_vla(q, k, v, u, output_final_state=True), 1e-10)


def test_nudges_off_any_period():
    q, k, v, u = vla_inputs(1, 70, 2, 8, 8)
    kw = dict(nudge_eps=0.0, period=7, output_final_state=True)
    _assert_close(chunk_vla(q, k, v, u, chunk_size=16, **kw), naive_recurrent_vla(q, k, v, u, **kw), 1e-10)


def test_cu_seqlens_ragged_with_offsets_and_states():
    H, K, V = 2, 8, 5
    lens = [5, 40, 1, 70, 16]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int64)
    q, k, v, u = vla_inputs(1, sum(lens), H, K, V)
    N = len(lens)
    kw = dict(period=16, offset=[0, 3, 15, 60, 16], cu_seqlens=cu, output_final_state=True, nudge_eps=0.02,
              initial_state=(torch.randn(N, H, K, V, dtype=torch.float64), _spd(N, H, K)))
    _assert_close(chunk_vla(q, k, v, u, chunk_size=16, **kw), naive_recurrent_vla(q, k, v, u, **kw), 1e-10)


@pytest.mark.parametrize("split", [16, 23, 32, 50])
def test_state_passing_two_pieces(split):
    q, k, v, u = vla_inputs(2, 90, 2, 8, 4)
    kw = dict(period=32, nudge_eps=0.01, output_final_state=True)
    ref = naive_recurrent_vla(q, k, v, u, **kw)
    o1, st = chunk_vla(q[:, :split], k[:, :split], v[:, :split], u[:, :split], chunk_size=16, **kw)
    o2, st2 = chunk_vla(q[:, split:], k[:, split:], v[:, split:], u[:, split:], chunk_size=16,
                        initial_state=st, offset=split, **kw)
    _assert_close((torch.cat([o1, o2], 1), st2), ref, 1e-10)


def test_per_sequence_offsets_in_dense_batch():
    q, k, v, u = vla_inputs(3, 40, 2, 8, 4)
    kw = dict(period=16, nudge_eps=0.05, offset=[0, 5, 31], output_final_state=True)
    _assert_close(chunk_vla(q, k, v, u, chunk_size=16, **kw), naive_recurrent_vla(q, k, v, u, **kw), 1e-10)


def test_fp32_long_sequence_relative_error():
    # T = 4096: rounding in fp32 accumulates over 64 chunks of phase 1 and 2; 1e-4 is ~1000 ulps of fp32.
    q, k, v, u = vla_inputs(1, 4096, 2, 32, 32)
    ref, (S_r, A_r) = naive_recurrent_vla(q, k, v, u, output_final_state=True)
    o, (S, A) = chunk_vla(*(x.float() for x in (q, k, v, u)), output_final_state=True)
    assert rel_err(o, ref) <= 1e-4
    assert rel_err(S, S_r) <= 1e-4
    assert rel_err(A, A_r) <= 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_compute_in_fp32(dtype):
    q, k, v, u = vla_inputs(2, 50, 2, 8, 8, dtype=dtype)
    o, (S, A) = chunk_vla(q, k, v, u, chunk_size=16, period=16, output_final_state=True)
    assert o.dtype == dtype and S.dtype == torch.float32 and A.dtype == torch.float32
    ref, _ = naive_recurrent_vla(*(x.double() for x in (q, k, v, u)), period=16)
    assert rel_err(o.float(), ref) < 1e-2  # bf16/fp16 output rounding (2^-8 relative) dominates


def _grads(fn, inputs, states, **kw):
    o, (S, A) = fn(*inputs, initial_state=tuple(states), output_final_state=True, **kw)
    torch.manual_seed(1)
    loss = (o * torch.randn_like(o)).sum() + (S * torch.randn_like(S)).sum() + (A * torch.randn_like(A)).sum()
    return torch.autograd.grad(loss, list(inputs) + list(states))


@pytest.mark.parametrize("C,period,offset", [(16, 16, 0), (16, 32, 9)])
def test_gradients_match_naive_autograd(C, period, offset):
    B, T, H, K, V = 2, 45, 2, 6, 5
    inputs = vla_inputs(B, T, H, K, V, requires_grad=True)
    states = [torch.randn(B, H, K, V, dtype=torch.float64, requires_grad=True), _spd(B, H, K).requires_grad_()]
    kw = dict(period=period, nudge_eps=0.01, offset=offset)
    g_chunk = _grads(lambda *a, **k: chunk_vla(*a, chunk_size=C, **k), inputs, states, **kw)
    g_naive = _grads(naive_recurrent_vla, inputs, states, **kw)
    for name, gc, gn in zip("q k v u S0 A0".split(), g_chunk, g_naive):
        if name == "A0":
            gn = 0.5 * (gn + gn.transpose(-1, -2))  # A is symmetric: the chunk op returns the symmetric part
        assert (gc - gn).abs().max() <= 1e-8 * max(1.0, gn.abs().max().item()), name


def test_gradcheck():
    inputs = vla_inputs(1, 20, 1, 3, 2, requires_grad=True)
    S0 = torch.randn(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)

    def f(q, k, v, u, S0):
        o, (S, A) = chunk_vla(q, k, v, u, chunk_size=16, period=16, nudge_eps=0.01, initial_state=(S0, None),
                              output_final_state=True)
        return o, S, A

    assert torch.autograd.gradcheck(f, (*inputs, S0), eps=1e-6, atol=1e-6)


def test_no_t_by_k_squared_tensor_saved():
    # Autograd may keep A once per chunk (T/C x K^2), never once per token (T x K^2).
    B, T, H, K, C = 1, 256, 1, 16, 16
    inputs = vla_inputs(B, T, H, K, K, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        chunk_vla(*inputs, chunk_size=C, period=C)
    assert max(saved) < T * K * K / 4


def test_bad_chunk_size_and_period():
    q, k, v, u = vla_inputs(1, 20, 1, 4, 4)
    with pytest.raises(ValueError, match="chunk_size must be 16, 32 or 64"):
        chunk_vla(q, k, v, u, chunk_size=24)
    with pytest.raises(ValueError, match="period .* multiple of chunk_size"):
        chunk_vla(q, k, v, u, chunk_size=64, period=20)
    with pytest.raises(ValueError, match="backend must be"):
        chunk_vla(q, k, v, u, backend="cuda")
    with pytest.raises(ValueError, match="lambda0"):
        chunk_vla(q, k, v, u, lambda0=0)


def test_dispatcher_modes_agree():
    import vla.ops as ops

    q, k, v, u = vla_inputs(1, 40, 2, 8, 8)
    kw = dict(period=16, output_final_state=True)
    ref = ops.vla(q, k, v, u, mode="naive", **kw)
    _assert_close(ops.vla(q, k, v, u, mode="chunk", chunk_size=16, **kw), ref, 1e-10)
    _assert_close(ops.vla(q, k, v, u, chunk_size=16, **kw), ref, 1e-10)
    with pytest.raises(ValueError, match="mode must be one of"):
        ops.vla(q, k, v, u, mode="fast")
