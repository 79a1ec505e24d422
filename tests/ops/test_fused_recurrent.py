"""fused_recurrent_vla (Triton) against naive_recurrent_vla in float64.

On a machine without a GPU the kernel runs through Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so shapes stay small. Large shapes are checked on the GPU by
benchmarks/check_fused_recurrent.py.

Tolerances.
* float64 input runs the kernel in float64: the only differences from the reference are the order of
  the float64 sums, so the error is a few units of u64 = 2**-53 ~ 1.1e-16 times the growth bound
  below; 1e-11 leaves a margin of ~1e3 over what is measured (~5e-16) and is still ~1e8 below what a
  wrong nudge position, offset or masking produces (the tests use nudge_eps >= 0.05 where the nudge
  is what is tested, so a misplaced nudge moves the output by ~1e-2).
* float32 input runs in float32 (u32 = 2**-24 ~ 6e-8). Per token the kernel does dot products of
  length K and rank-one updates: relative rounding error ~ sqrt(K) u32 per token (random rounding;
  the worst case is K u32). The carried errors are not amplified from token to token: A's
  Sherman-Morrison downdate shrinks A (A_t <= A_{t-1} in the SPD order) and the delta-rule map
  S -> (I - w k^T) S has spectral radius 1, so errors add up over T tokens like a random walk:
  sqrt(T K) u32. Normalising a = A k_hat to the write direction amplifies a relative error of a by at
  most the condition number kappa(A). Hence ``fp32_tol = 8 sqrt(T K) kappa u32`` (8 for the
  constants in the dot-product bound); for T = 40, K = 8, kappa ~ 10 it is ~1e-4, while the error
  measured is ~2e-7.
* bfloat16 input is upcast and computed in float32; the output is rounded to bfloat16 once, which is
  a relative error of at most 2**-9 per element (8 significant bits, round to nearest), so at most
  2**-9 in relative L2 norm: ``bf16_tol = 2**-9 + fp32_tol`` (float16: 11 bits, 2**-11). The reference gets the same bf16
  values upcast to float64. The final state stays float32 and gets ``fp32_tol``.
"""

import math
import os

import pytest
import torch

from tests.helpers import rel_err, vla_inputs
from vla.ops.vla.fused_recurrent import fused_recurrent_vla
from vla.ops.vla.naive import naive_recurrent_vla

F64_TOL = 1e-11
U32 = 2.0 ** -24


def fp32_tol(T, K, A_list):
    kappa = max(float(torch.linalg.cond(A.double()).max()) for A in A_list)
    return 8 * math.sqrt(T * K) * kappa * U32


def random_state(N, H, K, V, dtype=torch.float64):
    S0 = torch.randn(N, H, K, V, dtype=dtype)
    X = torch.randn(N, H, K, K, dtype=dtype)
    A0 = X @ X.transpose(-1, -2) / K + 0.5 * torch.eye(K, dtype=dtype)  # SPD
    return S0, A0


def run_both(q, k, v, u, **kw):
    o, st = fused_recurrent_vla(q, k, v, u, output_final_state=True, **kw)
    o_ref, st_ref = naive_recurrent_vla(q, k, v, u, output_final_state=True, **kw)
    return o, st, o_ref, st_ref


def assert_close64(o, st, o_ref, st_ref, tol=F64_TOL):
    assert o.dtype == torch.float64 and st[0].dtype == torch.float64 and st[1].dtype == torch.float64
    assert rel_err(o, o_ref) < tol
    assert rel_err(st[0], st_ref[0]) < tol
    assert rel_err(st[1], st_ref[1]) < tol


@pytest.mark.parametrize(
    "B,T,H,K,V,period,nudge_eps,offset,init",
    [
        (2, 40, 2, 8, 6, 7, 0.05, 3, True),      # small period: many nudges, shifted by an offset; K != V
        (1, 70, 2, 16, 16, 16, 0.1, 0, False),   # default-like state, crosses several periods
        (2, 33, 1, 5, 3, 5, 0.2, 4, True),       # non-power-of-two K and V (masked lanes)
        (1, 20, 3, 8, 8, 64, 0.0, 0, False),     # nudge off
    ],
)
def test_matches_naive_float64(B, T, H, K, V, period, nudge_eps, offset, init):
    q, k, v, u = vla_inputs(B, T, H, K, V)
    kw = dict(period=period, nudge_eps=nudge_eps, offset=offset, lambda0=0.3, scale=0.7)
    if init:
        kw["initial_state"] = random_state(B, H, K, V)
    assert_close64(*run_both(q, k, v, u, **kw))


def test_defaults_and_no_final_state():
    q, k, v, u = vla_inputs(1, 66, 2, 8, 8)  # crosses the default period 64
    o, st = fused_recurrent_vla(q, k, v, u)
    o_ref, _ = naive_recurrent_vla(q, k, v, u)
    assert st is None
    assert o.shape == o_ref.shape and o.dtype == q.dtype
    assert rel_err(o, o_ref) < F64_TOL


def test_only_one_initial_state_given():
    B, T, H, K, V = 1, 12, 2, 8, 4
    q, k, v, u = vla_inputs(B, T, H, K, V)
    S0, A0 = random_state(B, H, K, V)
    assert_close64(*run_both(q, k, v, u, initial_state=(S0, None), period=5, nudge_eps=0.1))
    assert_close64(*run_both(q, k, v, u, initial_state=(None, A0), period=5, nudge_eps=0.1))


def test_state_passing_in_two_pieces():
    B, T, H, K, V, cut = 2, 45, 2, 8, 4, 19
    q, k, v, u = vla_inputs(B, T, H, K, V)
    kw = dict(period=8, nudge_eps=0.1)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(q, k, v, u, output_final_state=True, **kw)
    o1, st1 = fused_recurrent_vla(q[:, :cut], k[:, :cut], v[:, :cut], u[:, :cut], output_final_state=True, **kw)
    o2, (S, A) = fused_recurrent_vla(q[:, cut:], k[:, cut:], v[:, cut:], u[:, cut:], initial_state=st1,
                                     offset=cut, output_final_state=True, **kw)
    assert rel_err(torch.cat([o1, o2], 1), o_ref) < F64_TOL
    assert rel_err(S, S_ref) < F64_TOL and rel_err(A, A_ref) < F64_TOL


def test_decoding_one_token_at_a_time():
    """The documented decode path: T=1 calls, state and offset carried, equals the whole sequence."""
    B, T, H, K, V, pre = 2, 14, 2, 8, 8, 5
    q, k, v, u = vla_inputs(B, T, H, K, V)
    kw = dict(period=4, nudge_eps=0.1)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(q, k, v, u, output_final_state=True, **kw)
    outs = []
    o, state = fused_recurrent_vla(q[:, :pre], k[:, :pre], v[:, :pre], u[:, :pre], output_final_state=True, **kw)
    outs.append(o)
    for t in range(pre, T):
        o, state = fused_recurrent_vla(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], u[:, t:t + 1],
                                       initial_state=state, offset=t, output_final_state=True, **kw)
        outs.append(o)
    assert rel_err(torch.cat(outs, 1), o_ref) < F64_TOL
    assert rel_err(state[0], S_ref) < F64_TOL and rel_err(state[1], A_ref) < F64_TOL


def test_per_sequence_offsets():
    B, T, H, K, V = 3, 20, 1, 8, 4
    q, k, v, u = vla_inputs(B, T, H, K, V)
    assert_close64(*run_both(q, k, v, u, offset=[0, 3, 6], period=6, nudge_eps=0.2))


def test_cu_seqlens_ragged():
    lens = [7, 23, 1, 29]
    T, H, K, V = sum(lens), 2, 8, 6
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int64)
    q, k, v, u = vla_inputs(1, T, H, K, V)
    S0, A0 = random_state(len(lens), H, K, V)
    o, st, o_ref, st_ref = run_both(q, k, v, u, cu_seqlens=cu, initial_state=(S0, A0),
                                    offset=[0, 5, 2, 11], period=6, nudge_eps=0.1)
    assert_close64(o, st, o_ref, st_ref)
    # each packed sequence equals the same sequence run alone
    for i, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        oi, _ = naive_recurrent_vla(q[:, s:e], k[:, s:e], v[:, s:e], u[:, s:e], initial_state=(S0[i:i + 1], A0[i:i + 1]),
                                    offset=[0, 5, 2, 11][i], period=6, nudge_eps=0.1)
        assert rel_err(o[:, s:e], oi) < F64_TOL


def test_value_blocks_split():
    """Several programs per head (value blocks, the last one partial) must agree with one."""
    from vla.ops.vla.triton.fused_recurrent import fused_recurrent_vla_fwd

    B, T, H, K, V = 1, 18, 2, 8, 20
    q, k, v, u = vla_inputs(B, T, H, K, V)
    S0, A0 = random_state(B, H, K, V)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(q, k, v, u, initial_state=(S0, A0), period=4, nudge_eps=0.1,
                                                output_final_state=True)
    o, S, A = fused_recurrent_vla_fwd(q, k, v, u, scale=K ** -0.5, lambda0=0.1, period=4, nudge_eps=0.1,
                                      delta_min=1e-4, eps=1e-6, S0=S0, A0=A0, output_final_state=True,
                                      offsets=torch.zeros(B, dtype=torch.int64), cu_seqlens=None, N=B, BV=8)
    assert rel_err(o, o_ref) < F64_TOL and rel_err(S, S_ref) < F64_TOL and rel_err(A, A_ref) < F64_TOL


def test_float32_against_float64_reference():
    B, T, H, K, V = 2, 40, 2, 8, 8
    q, k, v, u = vla_inputs(B, T, H, K, V)
    S0, A0 = random_state(B, H, K, V)
    kw = dict(period=16, nudge_eps=0.05)
    o, (S, A) = fused_recurrent_vla(*(x.float() for x in (q, k, v, u)), initial_state=(S0.float(), A0.float()),
                                    output_final_state=True, **kw)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(q, k, v, u, initial_state=(S0, A0), output_final_state=True, **kw)
    tol = fp32_tol(T, K, [A0, A_ref])
    assert o.dtype == torch.float32 and S.dtype == torch.float32 and A.dtype == torch.float32
    assert rel_err(o, o_ref) < tol
    assert rel_err(S, S_ref) < tol and rel_err(A, A_ref) < tol


@pytest.mark.parametrize("dtype,out_rounding", [(torch.bfloat16, 2.0 ** -9), (torch.float16, 2.0 ** -11)])
def test_half_precision_input(dtype, out_rounding):
    B, T, H, K, V = 1, 40, 2, 8, 8
    xs = [x.to(dtype) for x in vla_inputs(B, T, H, K, V)]
    kw = dict(period=16, nudge_eps=0.05)
    o, (S, A) = fused_recurrent_vla(*xs, output_final_state=True, **kw)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(*(x.double() for x in xs), output_final_state=True, **kw)
    tol = fp32_tol(T, K, [A_ref, torch.eye(K) / 0.1])
    assert o.dtype == dtype and S.dtype == torch.float32
    assert rel_err(o, o_ref) < out_rounding + tol
    assert rel_err(S, S_ref) < tol and rel_err(A, A_ref) < tol


def test_empty_sequence_returns_initial_state():
    B, H, K, V = 1, 2, 4, 4
    q, k, v, u = vla_inputs(B, 0, H, K, V)
    S0, A0 = random_state(B, H, K, V)
    o, (S, A) = fused_recurrent_vla(q, k, v, u, initial_state=(S0, A0), output_final_state=True)
    assert o.shape == (B, 0, H, V)
    assert torch.equal(S, S0) and torch.equal(A, A0)


# ---- bad input ---------------------------------------------------------------------------------

def test_head_size_too_large():
    q, k, v, u = vla_inputs(1, 2, 1, 129, 4)
    with pytest.raises(ValueError, match=r"\bk\b.*K=129"):
        fused_recurrent_vla(q, k, v, u)
    q, k, v, u = vla_inputs(1, 2, 1, 4, 130)
    with pytest.raises(ValueError, match=r"\bv\b.*V=130"):
        fused_recurrent_vla(q, k, v, u)


def test_requires_grad_points_to_chunk():
    q, k, v, u = vla_inputs(1, 3, 1, 4, 4, requires_grad=True)
    with pytest.raises(NotImplementedError, match="chunk_vla"):
        fused_recurrent_vla(q, k, v, u)
    S0, A0 = random_state(1, 1, 4, 4)
    S0.requires_grad_()
    with pytest.raises(NotImplementedError, match="chunk_vla"):
        fused_recurrent_vla(*(x.detach() for x in (q, k, v, u)), initial_state=(S0, A0))
    with torch.no_grad():  # inference on parameters that require grad is fine
        o, _ = fused_recurrent_vla(q, k, v, u)
    assert not o.requires_grad


def test_shared_checker_errors():
    q, k, v, u = vla_inputs(1, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="lambda0"):
        fused_recurrent_vla(q, k, v, u, lambda0=0.0)
    with pytest.raises(ValueError, match="period"):
        fused_recurrent_vla(q, k, v, u, period=0)
    with pytest.raises(ValueError, match=r"\bu\b"):
        fused_recurrent_vla(q, k, v, u[..., :3])
    with pytest.raises(ValueError, match="initial_state"):
        fused_recurrent_vla(q, k, v, u, initial_state=(torch.zeros(1, 1, 4, 5, dtype=q.dtype), None))
    bad = q.clone()
    bad[0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\bq\b"):
        fused_recurrent_vla(bad, k, v, u)


def test_cpu_without_interpreter_is_refused(monkeypatch):
    q, k, v, u = vla_inputs(1, 3, 1, 4, 4)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"\bq\b.*cpu"):
        fused_recurrent_vla(q, k, v, u)
