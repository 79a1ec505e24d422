"""Context-parallel VLA (vla.distributed.context_parallel_vla) against the single-process reference.

Every comparison is in float64 against ``naive_recurrent_vla`` on the whole sequence. Tolerance
TOL = 1e-10 (relative L2): both sides compute the same function with different association orders
(Woodbury chunks and an affine composition across ranks instead of one token at a time). Rounding
in float64 is 1.1e-16 per operation; over T <= 16 tokens each error is amplified at most by the
condition number of the penalty matrix (<= 1 + T |u|^2 / lambda0 = 1 + 16 * (1/4) / 0.1 = 41 here) and
by the recurrence's Jacobian norm (<= 1.62 per token, SPEC §6, applied to an error that is itself
rounding-sized), giving a bound of order 1e-16 * 16 * 41 * 1.62^2 ~ 1e-13; gradients pass through the
same maps once more. 1e-10 leaves a 1000x margin and is still 10^4 below the effect of a nudge
placed one token off (checked by ``test_misplaced_nudge_is_visible``), of a wrong initial state or of
a missing rank's contribution, so the tests can fail for any real error.
"""

import pytest
import torch

from tests.distributed.launch import run_ranks
from tests.helpers import rel_err, vla_inputs
from vla.distributed import context_parallel_vla, penalty_inverse_pass
from vla.ops import chunk_vla, naive_recurrent_vla

TOL = 1e-10
HYPER = dict(lambda0=0.1, period=4, nudge_eps=0.05)


def _spd(N, H, K, lambda0, gen_scale=0.5):
    X = torch.randn(N, H, K, K, dtype=torch.float64)
    return torch.eye(K, dtype=torch.float64) / lambda0 + gen_scale * X @ X.transpose(-1, -2) / K


def _case(seed, lengths, offset, with_state, B=2, H=2, K=4, V=3):
    """Inputs of one whole sequence, identical on every rank (same seed)."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        q, k, v, u = vla_inputs(B=B, T=sum(lengths), H=H, K=K, V=V)
        state = (torch.randn(B, H, K, V, dtype=torch.float64), _spd(B, H, K, HYPER["lambda0"])) if with_state else None
        w_o = torch.randn(B, sum(lengths), H, V, dtype=torch.float64)
        w_S = torch.randn(B, H, K, V, dtype=torch.float64)
        w_A = torch.randn(B, H, K, K, dtype=torch.float64)
    return dict(x=(q, k, v, u), state=state, w=(w_o, w_S, w_A), lengths=lengths, offset=offset)


def _reference(case, hyper):
    xs = [x.clone().requires_grad_() for x in case["x"]]
    state = None if case["state"] is None else tuple(s.clone().requires_grad_() for s in case["state"])
    o, (S, A) = naive_recurrent_vla(*xs, **hyper, initial_state=state, output_final_state=True,
                                    offset=case["offset"])
    w_o, w_S, w_A = case["w"]
    ((o * w_o).sum() + (S * w_S).sum() + (A * w_A).sum()).backward()
    return dict(o=o.detach(), S=S.detach(), A=A.detach(), grads=[x.grad for x in xs],
                state_grads=None if state is None else [s.grad for s in state])


def _check_case(rank, world, case, op=naive_recurrent_vla, op_kwargs=None, hyper=HYPER, group=None, **kw):
    ref = _reference(case, hyper)
    lengths = case["lengths"]
    start = sum(lengths[:rank])
    sl = slice(start, start + lengths[rank])
    xs = [x[:, sl].clone().requires_grad_() for x in case["x"]]
    state = None
    if case["state"] is not None and rank == 0:
        state = tuple(s.clone().requires_grad_() for s in case["state"])
    o, (S, A) = context_parallel_vla(*xs, **hyper, initial_state=state, output_final_state=True,
                                     offset=case["offset"], op=op, op_kwargs=op_kwargs, group=group, **kw)
    w_o, w_S, w_A = case["w"]
    loss = (o * w_o[:, sl]).sum()
    if rank == world - 1:  # the final state enters the global loss once, through one rank
        loss = loss + (S * w_S).sum() + (A * w_A).sum()
    loss.backward()
    where = f"rank {rank}/{world}, lengths {lengths}, offset {case['offset']}"
    assert o.shape == ref["o"][:, sl].shape
    assert rel_err(o, ref["o"][:, sl]) < TOL, where
    assert rel_err(S, ref["S"]) < TOL, where
    assert rel_err(A, ref["A"]) < TOL, where
    for name, x, gref in zip("qkvu", xs, ref["grads"]):
        assert rel_err(x.grad, gref[:, sl]) < TOL, f"grad {name}, {where}"
    if state is not None:
        g_S, g_A = ref["state_grads"]
        assert rel_err(state[0].grad, g_S) < TOL, f"grad of initial S, {where}"
        # A is symmetric: its gradient is compared along symmetric directions (its symmetric part)
        assert rel_err(state[1].grad, 0.5 * (g_A + g_A.transpose(-1, -2))) < TOL, f"grad of initial A, {where}"
    elif rank > 0 and case["state"] is not None:
        assert state is None  # other ranks do not read the initial state


# ------------------------------------------------------------------ bodies run on every rank

def _body_two_ranks(rank, world):
    # boundary at absolute position 3 + 5 = 8, a multiple of the period: on the nudge
    _check_case(rank, world, _case(1, [5, 7], 3, with_state=True))
    # boundary at 6: off the nudge; default initial state
    _check_case(rank, world, _case(2, [6, 6], 0, with_state=False))
    # the K + V = 7 value columns split over calls of at most 3 columns
    _check_case(rank, world, _case(2, [6, 6], 0, with_state=True), max_width=3)
    # step 1 by the op itself instead of the Woodbury pass
    _check_case(rank, world, _case(9, [5, 7], 3, with_state=True), a_pass="op")
    # one token on rank 0; per-sequence offsets
    _check_case(rank, world, _case(3, [1, 9], [2, 7], with_state=True))
    # the chunk back end as each rank's op (period a multiple of its chunk size); boundary at
    # 12 + 20 = 32, on the period, and chunks that start mid-chunk on rank 1
    _check_case(rank, world, _case(7, [20, 28], 12, with_state=True), op=chunk_vla,
                op_kwargs={"chunk_size": 16}, hyper=dict(HYPER, period=16), a_pass="op")
    # float32 input: output in float32, final state in float32; the float64 bound above scaled by
    # float32's unit roundoff (6e-8 instead of 1.1e-16) is ~4e-5
    q, k, v, u = (x.float() for x in _case(6, [5, 7], 0, with_state=False)["x"])
    o_ref, (S_ref, _) = naive_recurrent_vla(q, k, v, u, **HYPER, output_final_state=True)
    sl = slice(0, 5) if rank == 0 else slice(5, 12)
    o, (S, A) = context_parallel_vla(q[:, sl], k[:, sl], v[:, sl], u[:, sl], **HYPER, output_final_state=True,
                                     op=naive_recurrent_vla)
    assert o.dtype == S.dtype == A.dtype == torch.float32
    assert rel_err(o, o_ref[:, sl]) < 1e-4 and rel_err(S, S_ref) < 1e-4
    # bfloat16 input, against the reference on the same bf16 inputs: the op still computes in float32;
    # its output (bf16, 2^-8 relative rounding per element) is combined in float32 with one more
    # rounded term (S_in^T applied to a bf16 output block), and the gradients are rounded to bf16 the
    # same way: measured 3e-3 (output) and 4e-3 (gradients); 1e-2 bounds both, as for chunk_vla
    full = [x.bfloat16().requires_grad_() for x in _case(6, [5, 7], 0, with_state=False)["x"]]
    o_ref, (S_ref, _) = naive_recurrent_vla(*full, **HYPER, output_final_state=True)
    o_ref.float().square().sum().backward()
    xs = [x.detach()[:, sl].clone().requires_grad_() for x in full]
    o, (S, A) = context_parallel_vla(*xs, **HYPER, output_final_state=True, op=naive_recurrent_vla)
    o.float().square().sum().backward()
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert rel_err(o.float(), o_ref[:, sl].float()) < 1e-2 and rel_err(S, S_ref) < 1e-2
    for x, x_ref in zip(xs, full):
        assert x.grad.dtype == torch.bfloat16 and rel_err(x.grad.float(), x_ref.grad[:, sl].float()) < 1e-2
    # bad input on one rank only: every rank raises ValueError instead of hanging in a collective
    q, k, v, u = vla_inputs(B=1, T=3, H=1, K=4, V=2)
    if rank == 1:
        u = u[..., :3]
    with pytest.raises(ValueError):
        context_parallel_vla(q, k, v, u, **HYPER)
    # shapes that disagree across ranks
    q, k, v, u = vla_inputs(B=1, T=3, H=1, K=4, V=2 + rank)
    with pytest.raises(ValueError, match="same B, H, K, V"):
        context_parallel_vla(q, k, v, u, **HYPER)


def _body_four_ranks(rank, world):
    # boundaries at 4 (on the period), 7 (off), 12 (on); initial state given
    _check_case(rank, world, _case(4, [4, 3, 5, 4], 0, with_state=True))
    # boundaries at 2+3=5, 8 (on), 10; per-sequence offsets shift the second sequence by 3
    _check_case(rank, world, _case(5, [3, 3, 2, 4], [2, 5], with_state=False))
    # two independent 2-rank groups ({0, 1} and {2, 3}), each splitting its own sequence
    import torch.distributed as dist
    groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    mine = groups[rank // 2]
    case = _case(8 + rank // 2, [4, 7], 1, with_state=True)
    _check_case(rank % 2, 2, case, group=mine)


def test_context_parallel_two_ranks():
    run_ranks(_body_two_ranks, 2)


def test_context_parallel_four_ranks():
    run_ranks(_body_four_ranks, 4)


# ------------------------------------------------------------------ single process

@pytest.mark.parametrize("offset,T,period,chunk", [(0, 13, 4, 64), (3, 13, 4, 2), (5, 20, 8, 16), (7, 11, 1000, 4)])
def test_penalty_inverse_pass_matches_naive(offset, T, period, chunk):
    q, k, v, u = vla_inputs(B=2, T=T, H=2, K=4, V=3)
    A0 = _spd(2, 2, 4, 0.1)
    _, (_, A_ref) = naive_recurrent_vla(q, k, v, u, lambda0=0.1, period=period, nudge_eps=0.05,
                                        initial_state=(None, A0), output_final_state=True, offset=offset)
    A = penalty_inverse_pass(A0, u, torch.full((2,), offset), period=period, nudge_eps=0.05, chunk_size=chunk)
    assert rel_err(A, A_ref) < TOL


def test_misplaced_nudge_is_visible():
    """A nudge one token off changes the result far beyond TOL: the offsets above are really tested."""
    q, k, v, u = vla_inputs(B=2, T=12, H=2, K=4, V=3)
    o1, (S1, A1) = naive_recurrent_vla(q, k, v, u, **HYPER, offset=0, output_final_state=True)
    o2, (S2, A2) = naive_recurrent_vla(q, k, v, u, **HYPER, offset=1, output_final_state=True)
    assert rel_err(o2, o1) > 1e4 * TOL and rel_err(A2, A1) > 1e4 * TOL


def test_one_process_without_process_group():
    """Without an initialised process group the op runs as a single rank and equals the reference."""
    q, k, v, u = vla_inputs(B=2, T=9, H=2, K=4, V=3)
    o, (S, A) = context_parallel_vla(q, k, v, u, **HYPER, offset=2, output_final_state=True,
                                     op=naive_recurrent_vla)
    o_ref, (S_ref, A_ref) = naive_recurrent_vla(q, k, v, u, **HYPER, offset=2, output_final_state=True)
    assert rel_err(o, o_ref) < TOL and rel_err(S, S_ref) < TOL and rel_err(A, A_ref) < TOL
    with pytest.raises(ValueError, match="cu_seqlens"):
        context_parallel_vla(q[:1], k[:1], v[:1], u[:1], cu_seqlens=torch.tensor([0, 4, 9]))
