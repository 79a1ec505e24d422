"""Pins down the definition: naive_recurrent_vla against SPEC §1, written out independently."""

import math

import pytest
import torch

from tests.helpers import rel_err, vla_inputs
from vla.ops import naive_recurrent_delta_rule, naive_recurrent_vla


def reference_vla(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                  eps=1e-6, S0=None, A0=None, offset=0):
    """SPEC §1 for one sequence, one head at a time, column vectors, no batching: an independent
    transcription used only to check the op. Inputs [T, H, D] float64."""
    T, H, K = k.shape
    Vd = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    o = torch.zeros(T, H, Vd, dtype=torch.float64)
    S_out, A_out = [], []
    for h in range(H):
        S = torch.zeros(K, Vd, dtype=torch.float64) if S0 is None else S0[h].clone()
        A = torch.eye(K, dtype=torch.float64) / lambda0 if A0 is None else A0[h].clone()
        for t in range(T):
            ut = u[t, h].reshape(K, 1)
            z = A @ ut
            d = max(1.0 + float(ut.T @ z), delta_min)
            A = A - (z @ z.T) / d
            kt = k[t, h].reshape(K, 1)
            kh = kt / max(float(torch.linalg.vector_norm(kt)), eps)
            a = A @ kh
            al = a / max(float(torch.linalg.vector_norm(a)), eps)
            vt = v[t, h].reshape(Vd, 1)
            S = S + al @ (vt - S.T @ kh).T
            o[t, h] = (scale * (S.T @ q[t, h].reshape(K, 1))).reshape(Vd)
            if nudge_eps > 0 and (offset + t + 1) % period == 0:
                A = A + nudge_eps * torch.eye(K, dtype=torch.float64)
        S_out.append(S)
        A_out.append(A)
    return o, torch.stack(S_out), torch.stack(A_out)


@pytest.mark.parametrize("K,V,period,offset", [(8, 8, 64, 0), (8, 5, 7, 0), (6, 10, 5, 3), (16, 4, 16, 13)])
def test_matches_independent_transcription(K, V, period, offset):
    B, T, H = 2, 50, 3
    q, k, v, u = vla_inputs(B, T, H, K, V)
    S0 = torch.randn(B, H, K, V, dtype=torch.float64)
    X = torch.randn(B, H, K, K, dtype=torch.float64)
    A0 = X @ X.transpose(-1, -2) / K + 0.5 * torch.eye(K, dtype=torch.float64)
    o, (S, A) = naive_recurrent_vla(q, k, v, u, period=period, offset=offset, initial_state=(S0, A0),
                                    output_final_state=True, lambda0=0.3, scale=0.7)
    for b in range(B):
        o_ref, S_ref, A_ref = reference_vla(q[b], k[b], v[b], u[b], lambda0=0.3, scale=0.7, period=period,
                                            S0=S0[b], A0=A0[b], offset=offset)
        assert (o[b] - o_ref).abs().max() < 1e-10
        assert (S[b] - S_ref).abs().max() < 1e-10
        assert (A[b] - A_ref).abs().max() < 1e-10


def test_defaults_match_spec():
    q, k, v, u = vla_inputs(1, 70, 2, 8, 8)
    o, (S, A) = naive_recurrent_vla(q, k, v, u, output_final_state=True)
    o_ref, S_ref, A_ref = reference_vla(q[0], k[0], v[0], u[0])  # lambda0 0.1, period 64, eps 1e-3
    assert (o[0] - o_ref).abs().max() < 1e-10
    assert (A[0] - A_ref).abs().max() < 1e-10


def test_penalty_inverse_without_nudge_is_exact_inverse():
    B, T, H, K = 2, 30, 2, 6
    q, k, v, u = vla_inputs(B, T, H, K, 4)
    u = u * 3.0  # larger directions: A moves far from I / lambda0
    _, (S, A) = naive_recurrent_vla(q, k, v, u, nudge_eps=0.0, lambda0=0.2, output_final_state=True)
    M = 0.2 * torch.eye(K, dtype=torch.float64) + torch.einsum("bthi,bthj->bhij", u, u)
    assert (A - torch.linalg.inv(M)).abs().max() < 1e-10
    # and A stays symmetric positive definite
    assert torch.linalg.eigvalsh(A).min() > 0


def test_write_direction_has_unit_norm():
    # From S = 0 one token writes S = write_dir v^T, so ||S||_F = ||v|| exactly when ||write_dir|| = 1.
    B, H, K, V = 3, 4, 8, 5
    q, k, v, u = vla_inputs(B, 1, H, K, V)
    X = torch.randn(B, H, K, K, dtype=torch.float64)
    A0 = X @ X.transpose(-1, -2) + 0.1 * torch.eye(K, dtype=torch.float64)
    _, (S, _) = naive_recurrent_vla(q, k * 5, v, u, initial_state=(None, A0), output_final_state=True)
    assert torch.allclose(S.flatten(2).norm(dim=-1), v[:, 0].norm(dim=-1), atol=1e-12)


def test_zero_penalty_direction_is_deltanet_with_unit_beta():
    B, T, H, K, V = 2, 80, 2, 8, 6
    q, k, v, u = vla_inputs(B, T, H, K, V)
    o, (S, _) = naive_recurrent_vla(q, k, v, torch.zeros_like(u), period=16, output_final_state=True)
    k_hat = k / k.norm(dim=-1, keepdim=True)
    o_d, (S_d,) = naive_recurrent_delta_rule(q, k_hat, v, torch.ones(B, T, H, dtype=torch.float64),
                                             output_final_state=True)
    assert (o - o_d).abs().max() < 1e-10
    assert (S - S_d).abs().max() < 1e-10


@pytest.mark.parametrize("split", [1, 15, 16, 17, 32, 47])
def test_two_pieces_equal_whole(split):
    B, T, H, K, V = 2, 64, 2, 8, 5
    period = 16
    q, k, v, u = vla_inputs(B, T, H, K, V)
    o, (S, A) = naive_recurrent_vla(q, k, v, u, period=period, output_final_state=True)
    o1, st = naive_recurrent_vla(q[:, :split], k[:, :split], v[:, :split], u[:, :split], period=period,
                                 output_final_state=True)
    o2, (S2, A2) = naive_recurrent_vla(q[:, split:], k[:, split:], v[:, split:], u[:, split:], period=period,
                                       initial_state=st, offset=split, output_final_state=True)
    assert (torch.cat([o1, o2], 1) - o).abs().max() < 1e-12
    assert (S2 - S).abs().max() < 1e-12 and (A2 - A).abs().max() < 1e-12


def test_token_by_token_equals_whole():
    B, T, H, K, V = 1, 20, 2, 4, 4
    q, k, v, u = vla_inputs(B, T, H, K, V)
    o, _ = naive_recurrent_vla(q, k, v, u, period=4)
    state, outs = None, []
    for t in range(T):
        ot, state = naive_recurrent_vla(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], u[:, t:t + 1], period=4,
                                        initial_state=state, offset=t, output_final_state=True)
        outs.append(ot)
    assert (torch.cat(outs, 1) - o).abs().max() < 1e-12


def test_cu_seqlens_equals_separate_calls():
    H, K, V = 2, 8, 4
    lens = [5, 17, 1, 33]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int64)
    T = sum(lens)
    q, k, v, u = vla_inputs(1, T, H, K, V)
    N = len(lens)
    S0 = torch.randn(N, H, K, V, dtype=torch.float64)
    offsets = [0, 3, 15, 60]
    o, (S, A) = naive_recurrent_vla(q, k, v, u, period=16, cu_seqlens=cu, initial_state=(S0, None),
                                    offset=offsets, output_final_state=True)
    for i, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        oi, (Si, Ai) = naive_recurrent_vla(q[:, s:e], k[:, s:e], v[:, s:e], u[:, s:e], period=16,
                                           initial_state=(S0[i:i + 1], None), offset=offsets[i],
                                           output_final_state=True)
        assert (o[:, s:e] - oi).abs().max() < 1e-12
        assert (S[i] - Si[0]).abs().max() < 1e-12 and (A[i] - Ai[0]).abs().max() < 1e-12


def test_per_sequence_offsets_in_a_batch():
    B, T, H, K, V = 3, 20, 1, 4, 4
    q, k, v, u = vla_inputs(B, T, H, K, V)
    offsets = [0, 5, 9]
    o, _ = naive_recurrent_vla(q, k, v, u, period=8, offset=offsets, nudge_eps=0.5)
    for b in range(B):
        ob, _ = naive_recurrent_vla(q[b:b + 1], k[b:b + 1], v[b:b + 1], u[b:b + 1], period=8,
                                    offset=offsets[b], nudge_eps=0.5)
        assert (o[b:b + 1] - ob).abs().max() < 1e-12


def test_nudge_fires_after_the_read_at_multiples_of_period():
    # One token at absolute position `period`: the nudge lands on the final A, not on this token's read.
    q, k, v, u = vla_inputs(1, 1, 1, 4, 4)
    _, (S_a, A_a) = naive_recurrent_vla(q, k, v, u, period=4, offset=3, nudge_eps=0.25, output_final_state=True)
    _, (S_b, A_b) = naive_recurrent_vla(q, k, v, u, period=4, offset=0, nudge_eps=0.25, output_final_state=True)
    assert torch.allclose(S_a, S_b, atol=0, rtol=0)
    assert torch.allclose(A_a - A_b, 0.25 * torch.eye(4, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_computes_in_fp32(dtype):
    q, k, v, u = vla_inputs(2, 24, 2, 8, 8, dtype=dtype)
    o, (S, A) = naive_recurrent_vla(q, k, v, u, period=8, output_final_state=True)
    assert o.dtype == dtype and S.dtype == torch.float32 and A.dtype == torch.float32
    o32, (S32, _) = naive_recurrent_vla(*(x.float() for x in (q, k, v, u)), period=8, output_final_state=True)
    assert torch.equal(o, o32.to(dtype))
    assert torch.equal(S, S32)
    o64, _ = naive_recurrent_vla(*(x.double() for x in (q, k, v, u)), period=8)
    assert rel_err(o32, o64) < 1e-5


def test_gradcheck_float64():
    q, k, v, u = vla_inputs(1, 9, 2, 3, 2, requires_grad=True)
    S0 = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    X = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    A0 = (X @ X.transpose(-1, -2) + torch.eye(3, dtype=torch.float64)).requires_grad_()

    def f(q, k, v, u, S0, A0):
        o, (S, A) = naive_recurrent_vla(q, k, v, u, period=4, nudge_eps=0.01, initial_state=(S0, A0),
                                        output_final_state=True)
        return o, S, A

    assert torch.autograd.gradcheck(f, (q, k, v, u, S0, A0), eps=1e-6, atol=1e-6)


def test_empty_sequence_length_zero():
    q, k, v, u = vla_inputs(1, 0, 2, 4, 3)
    o, (S, A) = naive_recurrent_vla(q, k, v, u, output_final_state=True)
    assert o.shape == (1, 0, 2, 3) and torch.equal(S, torch.zeros_like(S))
    assert torch.allclose(A, torch.eye(4, dtype=torch.float64).expand_as(A) * 10)


def test_scale_default_is_inverse_sqrt_k():
    q, k, v, u = vla_inputs(1, 5, 1, 16, 4)
    o, _ = naive_recurrent_vla(q, k, v, u)
    o1, _ = naive_recurrent_vla(q, k, v, u, scale=1.0)
    assert torch.allclose(o, o1 / 4.0, atol=1e-14)
