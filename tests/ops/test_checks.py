"""Bad input gets a ValueError that names the argument, whichever op is called."""

import math

import pytest
import torch

from tests.helpers import vla_inputs
from vla.ops import naive_recurrent_delta_rule, naive_recurrent_linear_attn, naive_recurrent_vla


def _call(**over):
    q, k, v, u = vla_inputs(1, 6, 2, 4, 3)
    args = dict(q=q, k=k, v=v, u=u)
    kw = {}
    for name, val in over.items():
        if name in args:
            args[name] = val
        else:
            kw[name] = val
    return naive_recurrent_vla(args["q"], args["k"], args["v"], args["u"], **kw)


def _bad(match, **over):
    with pytest.raises(ValueError, match=match):
        _call(**over)


def test_shapes():
    _bad("q must have k's shape", q=torch.randn(1, 6, 2, 5, dtype=torch.float64))
    _bad("v must have shape", v=torch.randn(1, 7, 2, 3, dtype=torch.float64))
    _bad("u must have k's shape", u=torch.randn(1, 6, 2, 3, dtype=torch.float64))
    _bad("k must have 4 dimensions", k=torch.randn(6, 2, 4, dtype=torch.float64))
    _bad("q must be a floating-point", q=torch.ones(1, 6, 2, 4, dtype=torch.int64))


def test_dtype_and_device_mismatch():
    _bad("v has dtype", v=torch.randn(1, 6, 2, 3, dtype=torch.float32))
    _bad("u has dtype", u=torch.randn(1, 6, 2, 4, dtype=torch.float32))
    if torch.cuda.is_available():
        _bad("is on", u=torch.randn(1, 6, 2, 4, dtype=torch.float64, device="cuda"))


@pytest.mark.parametrize("name", ["q", "k", "v", "u"])
def test_non_finite(name):
    q, k, v, u = vla_inputs(1, 6, 2, 4, 3)
    x = dict(q=q, k=k, v=v, u=u)[name].clone()
    x[0, 3, 1, 0] = math.nan if name != "v" else math.inf
    _bad(f"{name} contains non-finite", **{name: x})


def test_hyperparameters():
    _bad("lambda0 must be > 0", lambda0=0.0)
    _bad("lambda0 must be > 0", lambda0=-1.0)
    _bad("period must be >= 1", period=0)
    _bad("period must be an int", period=2.5)
    _bad("nudge_eps must be >= 0", nudge_eps=-1e-3)
    _bad("delta_min must be > 0", delta_min=0.0)
    _bad("scale must be finite", scale=math.inf)
    _bad("lambda0 must be finite", lambda0=math.nan)


def test_cu_seqlens():
    q, k, v, u = vla_inputs(2, 6, 2, 4, 3)
    with pytest.raises(ValueError, match="B == 1"):
        naive_recurrent_vla(q, k, v, u, cu_seqlens=torch.tensor([0, 6]))
    _bad("strictly increasing", cu_seqlens=torch.tensor([0, 4, 4, 6]))
    _bad("strictly increasing", cu_seqlens=torch.tensor([0, 5, 3, 6]))
    _bad("must end at T", cu_seqlens=torch.tensor([0, 3, 5]))
    _bad("must start at 0", cu_seqlens=torch.tensor([1, 6]))
    _bad("cu_seqlens must be a 1-D integer", cu_seqlens=torch.tensor([0.0, 6.0]))


def test_offset():
    _bad("offset must be >= 0", offset=-1)
    _bad("offset must be an int or 1 ints", offset=[1, 2])
    _bad("offset must be an int", offset="3")


def test_initial_state():
    _bad("initial_state S must have shape", initial_state=(torch.zeros(1, 2, 4, 4, dtype=torch.float64), None))
    _bad("initial_state A must have shape", initial_state=(None, torch.zeros(1, 2, 4, 3, dtype=torch.float64)))
    _bad("initial_state must be a tuple of 2", initial_state=(None,))
    _bad("initial_state must be a tuple", initial_state=torch.zeros(1, 2, 4, 3))
    bad = torch.zeros(1, 2, 4, 3, dtype=torch.float64)
    bad[0, 0, 0, 0] = math.nan
    _bad("initial_state S contains non-finite", initial_state=(bad, None))
    # the initial A's witness is a norm bound, not a sum: NaN and Inf are still caught
    for x in (math.nan, math.inf, -math.inf):
        A = torch.eye(4, dtype=torch.float64).expand(1, 2, 4, 4).clone()
        A[0, 1, 2, 3] = x
        _bad("initial_state A contains non-finite", initial_state=(None, A))


def test_baselines_check_too():
    q, k, v, _ = vla_inputs(1, 6, 2, 4, 3)
    with pytest.raises(ValueError, match="beta must have shape"):
        naive_recurrent_delta_rule(q, k, v, torch.ones(1, 6, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="initial_state z must have shape"):
        naive_recurrent_linear_attn(q, k, v, initial_state=(None, torch.zeros(1, 2, 3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="v has dtype"):
        naive_recurrent_linear_attn(q, k, v.float())


def test_large_finite_values_are_not_mistaken_for_non_finite():
    # the fast check sums the tensor; a sum that overflows must fall back to the exact check
    q, k, v, u = vla_inputs(1, 6, 2, 4, 3, dtype=torch.float32)
    big = torch.full_like(v, 3e38)
    naive_recurrent_vla(q, k, big, u)  # no error: every value is finite
    big[0, 2, 1, 0] = -math.inf
    with pytest.raises(ValueError, match="v contains non-finite"):
        naive_recurrent_vla(q, k, big, u)


def test_the_check_measures_u_and_the_initial_A_in_its_one_pass():
    # SeqInfo.norms: the largest squared row norm of u and a bound on the initial A's spectral norm, which
    # the Triton chunk back end's CHAIN_SOLVER="auto" reads instead of a second pass and synchronisation
    from vla.ops.utils import input_checks
    from vla.ops.vla.naive import check_vla_inputs

    q, k, v, u = vla_inputs(2, 6, 3, 4, 3, dtype=torch.float32)
    A0 = torch.randn(2, 3, 4, 4)
    info = check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, measure_norms=True, initial_state=(None, A0), offset=0, cu_seqlens=None)
    assert info.norms["u"] == pytest.approx(float(u.square().sum(-1).max()), rel=1e-6)
    # a bound on A0's spectral norm: min(Frobenius, max(largest column sum, largest row sum)) of |A0|
    bound = torch.minimum(A0.square().sum((-1, -2)).sqrt(),
                          torch.maximum(A0.abs().sum(-2).amax(-1), A0.abs().sum(-1).amax(-1))).max()
    assert info.norms["initial_state A"] == pytest.approx(float(bound), rel=1e-6)
    assert info.norms["initial_state A"] >= float(torch.linalg.matrix_norm(A0, 2).max()) * (1 - 1e-6)
    # exact for a diagonal A (the default initial A = I / lambda0), where the Frobenius norm is sqrt(K) too large
    info = check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, measure_norms=True, initial_state=(None, torch.eye(4).expand(2, 3, 4, 4) * 10.0),
                            offset=0, cu_seqlens=None)
    assert info.norms["initial_state A"] == pytest.approx(10.0)
    assert set(info.norms) == {"u", "initial_state A"}
    # a squared norm that overflows is finite input: no error, and an infinite bound
    big = torch.full_like(u, 3e30)
    info = check_vla_inputs(q, k, v, big, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, measure_norms=True, initial_state=None, offset=0, cu_seqlens=None)
    assert info.norms["u"] == math.inf
    with input_checks(False):
        info = check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                                eps=1e-6, measure_norms=True, initial_state=None, offset=0, cu_seqlens=None)
    assert info.norms == {}
    # the norm witnesses still catch NaN and Inf
    for x in (math.nan, math.inf):
        bad_u, bad_A = u.clone(), A0.clone()
        bad_u[0, 3, 1, 2], bad_A[1, 2, 0, 3] = x, x
        for name, args in (("u", (bad_u, None)), ("initial_state A", (u, bad_A))):
            with pytest.raises(ValueError, match=f"{name} contains non-finite"):
                check_vla_inputs(q, k, v, args[0], lambda0=0.1, scale=None, period=64, nudge_eps=1e-3,
                                 delta_min=1e-4, eps=1e-6, measure_norms=True, initial_state=(None, args[1]),
                                 offset=0, cu_seqlens=None)
    # deferred (defer_finite, what chunk_vla asks for where the Triton back end runs): nothing read yet, the same
    # norms once resolved, and the same error, raised by resolve()
    info = check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, measure_norms=True, initial_state=(None, A0), offset=0, cu_seqlens=None,
                            defer_finite=True)
    assert info.norms == {} and info.pending.resolve() == pytest.approx(
        check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6,
                         measure_norms=True, initial_state=(None, A0), offset=0, cu_seqlens=None).norms)
    bad_k = k.clone()
    bad_k[1, 0, 2, 1] = math.nan
    info = check_vla_inputs(q, bad_k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, measure_norms=True, initial_state=None, offset=0, cu_seqlens=None,
                            defer_finite=True)
    with pytest.raises(ValueError, match="k contains non-finite"):
        info.pending.resolve()
    # launch() (on CUDA: the witnesses on a side stream, read back without waiting for the main stream) gives the
    # same norms and the same error; on CPU tensors it leaves the work to resolve()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        qd, kd, vd, ud, A0d = (x.to(dev) for x in (q, k, v, u, A0))
        info = check_vla_inputs(qd, kd, vd, ud, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                                eps=1e-6, measure_norms=True, initial_state=(None, A0d), offset=0, cu_seqlens=None,
                                defer_finite=True)
        info.pending.launch()
        assert (info.pending._copy is not None) == (dev == "cuda")
        assert info.pending.resolve() == pytest.approx(
            check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                             eps=1e-6, measure_norms=True, initial_state=(None, A0), offset=0, cu_seqlens=None).norms,
            rel=1e-5)
        info = check_vla_inputs(qd, bad_k.to(dev), vd, ud, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3,
                                delta_min=1e-4, eps=1e-6, measure_norms=True, initial_state=None, offset=0,
                                cu_seqlens=None, defer_finite=True)
        info.pending.launch()
        with pytest.raises(ValueError, match="k contains non-finite"):
            info.pending.resolve()
    if torch.cuda.is_available():  # the side stream reads the inputs only once the main stream has written them
        kd = k.cuda()
        torch.cuda._sleep(100_000_000)  # (the main stream busy for a while)
        kd[1, 0, 2, 1] = math.nan  # (enqueued on the main stream behind the sleep)
        info = check_vla_inputs(q.cuda(), kd, v.cuda(), u.cuda(), lambda0=0.1, scale=None, period=64, nudge_eps=1e-3,
                                delta_min=1e-4, eps=1e-6, measure_norms=True, initial_state=None, offset=0,
                                cu_seqlens=None, defer_finite=True)
        info.pending.launch()
        with pytest.raises(ValueError, match="k contains non-finite"):
            info.pending.resolve()
    # and nothing is measured unless asked for (the other back ends need no norms)
    info = check_vla_inputs(q, k, v, u, lambda0=0.1, scale=None, period=64, nudge_eps=1e-3, delta_min=1e-4,
                            eps=1e-6, initial_state=(None, A0), offset=0, cu_seqlens=None)
    assert info.norms == {}
