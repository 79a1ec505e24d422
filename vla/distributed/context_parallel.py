"""Context parallelism for the VLA op: one sequence split across the ranks of a process group.

Rank ``r`` of ``R`` holds the contiguous piece ``[B, T_r, H, D]`` of every input; pieces follow each
other in rank order (rank 0 holds the first tokens). The computation, in the SPEC's row-vector
convention (state ``S`` is ``K x V``, ``S_t = (I - a_t k_t^T) S_{t-1} + a_t v_t^T`` with ``a_t`` the
unit write direction and ``k_t`` the unit read key):

1. **The penalty inverse A, rank to rank.** ``A`` depends on ``u`` alone, so rank ``r`` receives the
   ``A`` entering its piece from rank ``r - 1``, runs it through its piece (:func:`penalty_inverse_pass`:
   Woodbury on chunks, the A half of SPEC §3 phase 1, nudges at global positions) and sends the result
   to rank ``r + 1`` (``a_pass="op"`` runs the op itself with one value column instead, a kernel on
   a GPU). This is the only sequential part; it costs about ``2 K^2`` multiply-adds per token, a
   fraction of the op, but the last rank waits for R - 1 of them (pipelining it over heads is not done).
2. **Each piece as an affine map, all ranks at once.** Given its write directions, a piece maps the
   state entering it to ``S_out = P S_in + Q`` with ``P = prod_t (I - a_t k_t^T)`` (``K x K``, later
   tokens on the left) and ``Q`` the state it produces from ``S_in = 0``. Every rank gets ``P`` and
   ``Q`` with one call of the single-process op on its piece, with the state widened to
   ``[I | S_start]`` (``K x (K + V)``) and the values to ``[0 | v]``: the op's final state is then
   ``[P | P S_start + Q]`` and its output is ``[scale P_t^T q_t | scale (P_t S_start + Q_t)^T q_t]`` for every
   token t of the piece (``P_t, Q_t`` the maps of the piece's first t tokens). ``S_start`` is the
   initial state on rank 0 and zero elsewhere.
3. **Exclusive scan over ranks.** One ``all_gather`` of every rank's ``(P, Q, A_out)``; rank ``r``
   composes the maps of ranks ``0 .. r-1`` into the state entering its piece, ``S_in``, and its
   output is ``o_t = scale (P_t S_in + Q_t)^T q_t``, i.e. the op's second output block plus
   ``S_in^T`` applied to its first: no second pass over the piece is needed. Every rank composes
   all ``R`` maps into the global final state.

The whole is one ``torch.autograd.Function`` whose backward runs the same steps in reverse with
explicit collectives in a fixed order (local backward of step 3; ``all_reduce`` of the gathered
maps' gradients; local backward of step 2; the gradient of A passed rank to rank from the last rank
to the first), so every rank must call ``backward`` through its outputs when any input needs a
gradient. The gradient of the initial state appears on rank 0 (the rank that reads it); the initial
A enters through its symmetric part (A is symmetric by definition), so its gradient is the symmetric
part of the single-process op's (the two agree along every symmetric direction). Gradients of
weights shared by all ranks (the layer's projections) are partial per rank: sum them over the ranks
(``all_reduce`` with SUM; DDP averages instead, so multiply the loss by the number of ranks there).

Cost per rank: one op call on T/R tokens with K + V value columns instead of V (phase 2 costs
(K + V) / V times as much, twice at K = V; phase 1 is unchanged), plus its share of the sequential
A pass, an ``all_gather`` of R x (2K + V) x K numbers per head and an O(R K^2 (K + V)) composition.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.distributed as dist

from ..ops.common.chunk_delta import to_chunks
from ..ops.utils import ChunkLayout, OffsetLike, SeqInfo, check_hyper, compute_dtype, default_scale
from ..ops.utils import needs_grad as _needs_grad
from ..ops.vla.chunk import penalty_inverse_chain
from ..ops.vla.naive import check_vla_inputs, naive_recurrent_vla

__all__ = ["context_parallel_vla", "penalty_inverse_pass"]


# --------------------------------------------------------------------------------------------------
# the A recurrence alone on one piece
# --------------------------------------------------------------------------------------------------

def penalty_inverse_pass(A: torch.Tensor, u: torch.Tensor, offsets: torch.Tensor, *, period: int,
                         nudge_eps: float, chunk_size: int = 64) -> torch.Tensor:
    """The penalty inverse after a piece of tokens: the A half of SPEC §1 (no S, no write directions).

    A: [N, H, K, K] entering the piece; u: [N, T, H, K]; offsets: int64 [N] (CPU), the tokens each
    sequence consumed before the piece (the nudge fires after the token at absolute position
    ``offset + t`` when that is a multiple of ``period``). Returns A after the piece, computed as
    SPEC §3 does (Woodbury over chunks, one C x C Cholesky each): chunks are aligned to absolute
    multiples of ``C = gcd(chunk_size, period)`` (``chunk_size`` without nudges), so every nudge falls
    on a chunk end. Like the chunk form it does not apply the ``delta_min`` clamp, which never binds
    for SPD A in exact arithmetic. Differentiable by autograd.
    """
    N, T, H, K = u.shape
    if T == 0:
        return A
    C = math.gcd(chunk_size, period) if nudge_eps > 0 else chunk_size
    info = SeqInfo(B=N, T=T, H=H, K=K, V=K, N=N, offsets=offsets.to("cpu", torch.int64), cu_seqlens=None)
    layout = ChunkLayout(info, C, u.device)                     # zero rows leave A unchanged
    ends, real = layout.chunk_end_positions()
    symmetric = 0.5 * (A + A.transpose(-1, -2))                 # the chain reads A as symmetric
    _, _, A_out = penalty_inverse_chain(to_chunks(layout.pad(u), C), symmetric, (ends % period == 0) & real,
                                        nudge_eps=nudge_eps)
    return A_out


# --------------------------------------------------------------------------------------------------
# process-group helpers
# --------------------------------------------------------------------------------------------------

def _group_info(group) -> Tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise ValueError("group was given but torch.distributed is not initialised")
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _global_rank(group, r: int) -> int:
    return r if group is None else dist.get_global_rank(group, r)


_DTYPE_CODES = {torch.float16: 1, torch.bfloat16: 2, torch.float32: 3, torch.float64: 4}


def _default_op() -> Callable:
    try:
        from ..ops import chunk_vla  # lands with the chunk back end
    except ImportError:
        return naive_recurrent_vla
    return chunk_vla


class _Config:
    """Everything the autograd function needs besides tensors."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# --------------------------------------------------------------------------------------------------
# the autograd function
# --------------------------------------------------------------------------------------------------

def _local_maps(cfg, q, k, v, u, A_in, S_start):
    """Step 2 on this rank: (o_ext [B, T, H, K + V], S_ext_out [B, H, K, K + V]).

    The value columns are independent of each other, so the K + V columns may be split over several
    calls of the op (``cfg.max_width`` columns at most per call, e.g. the Triton kernels' 128).
    """
    B, T, H, K = q.shape
    eye = torch.eye(K, dtype=S_start.dtype, device=q.device).expand(B, H, K, K)
    S_ext = torch.cat([eye, S_start], dim=-1)
    v_ext = torch.cat([v.new_zeros(B, T, H, K), v], dim=-1)
    width = K + cfg.V
    step = width if cfg.max_width is None else cfg.max_width
    outs, states = [], []
    for c in range(0, width, step):
        cols = slice(c, min(c + step, width))
        o_c, (S_c, _) = cfg.op(q, k, v_ext[..., cols], u, lambda0=cfg.lambda0, scale=cfg.scale,
                               period=cfg.period, nudge_eps=cfg.nudge_eps, delta_min=cfg.delta_min,
                               eps=cfg.eps, initial_state=(S_ext[..., cols], A_in), output_final_state=True,
                               offset=cfg.offsets, **cfg.op_kwargs)
        outs.append(o_c)
        states.append(S_c)
    if len(outs) == 1:
        return outs[0], states[0]
    return torch.cat(outs, dim=-1), torch.cat(states, dim=-1)


def _penalty_pass(cfg, A_in, u):
    """Step 1 on this rank: the penalty inverse after its piece (differentiable in A_in and u)."""
    if cfg.a_pass == "woodbury":
        return penalty_inverse_pass(A_in, u.to(cfg.cdt), cfg.offsets, period=cfg.period,
                                    nudge_eps=cfg.nudge_eps, chunk_size=cfg.a_chunk_size)
    # the op itself, with one zero value column: its final A is the pass (A does not depend on q,
    # k or v, so u stands in for them, detached); on a GPU this is a kernel, not a Python loop
    B, T, H, _ = u.shape
    stand_in = u.detach()
    _, (_, A_out) = cfg.op(stand_in, stand_in, stand_in.new_zeros(B, T, H, 1), u, lambda0=cfg.lambda0,
                           scale=cfg.scale, period=cfg.period, nudge_eps=cfg.nudge_eps, delta_min=cfg.delta_min,
                           eps=cfg.eps, initial_state=(None, A_in), output_final_state=True,
                           offset=cfg.offsets, **cfg.op_kwargs)
    return A_out


def _combine(cfg, gathered, o_ext):
    """Step 3 on this rank: its output and the global final state from every rank's maps."""
    K, V, r, R = cfg.K, cfg.V, cfg.rank, cfg.world
    P, X, A_out = gathered[..., :K], gathered[..., K:K + V], gathered[..., K + V:]
    S = X[0]                                  # state after rank 0's piece (its S_start is the initial state)
    S_in = None
    for j in range(1, R):
        if j == r:
            S_in = S
        S = P[j] @ S + X[j]
    o = o_ext[..., K:]
    if S_in is not None:
        o = o + torch.einsum("bthk,bhkv->bthv", o_ext[..., :K], S_in)
    return o, S, A_out[R - 1]


class _ContextParallelVLA(torch.autograd.Function):

    @staticmethod
    def forward(ctx, cfg, q, k, v, u, S0, A0):
        r, R = cfg.rank, cfg.world
        needs = cfg.needs_grad
        leaf = (lambda x: x.detach().requires_grad_(needs)) if needs else (lambda x: x.detach())
        q_, k_, v_, u_ = (leaf(x) for x in (q, k, v, u))  # the op computes in fp32 (fp64) whatever their dtype
        B, T, H, K = q_.shape
        with torch.enable_grad() if needs else torch.no_grad():
            # step 1: A rank to rank
            if r == 0:
                A_in = leaf(A0.to(cfg.cdt))
                # A is symmetric by definition; reading only its symmetric part makes its gradient
                # symmetric and independent of how each formula happens to treat an asymmetric A
                A_used = 0.5 * (A_in + A_in.transpose(-1, -2))
            else:
                buf = torch.empty(B, H, K, K, dtype=cfg.cdt, device=q.device)
                dist.recv(buf, src=_global_rank(cfg.group, r - 1), group=cfg.group)
                A_in = A_used = leaf(buf)
            A_out = _penalty_pass(cfg, A_used, u_)
            if r < R - 1:
                dist.send(A_out.detach().contiguous(), dst=_global_rank(cfg.group, r + 1), group=cfg.group)
            # step 2: this piece as an affine map
            S_start = leaf(S0.to(cfg.cdt)) if r == 0 else A_used.new_zeros(B, H, K, cfg.V)
            failed = None
            try:
                o_ext, S_ext_out = _local_maps(cfg, q_, k_, v_, u_, A_used, S_start)
            except Exception as exc:  # keep every rank in step with the collectives, then re-raise
                failed = exc
                o_ext = A_used.new_zeros(B, T, H, K + cfg.V)
                S_ext_out = A_used.new_zeros(B, H, K, K + cfg.V)
        # step 3: exclusive scan of the maps
        slot = torch.cat([S_ext_out.detach(), A_out.detach()], dim=-1)
        flag = slot.new_full((1,), 1.0 if failed is not None else 0.0)
        flat = torch.cat([slot.reshape(-1), flag])
        if R > 1:
            parts = [torch.empty_like(flat) for _ in range(R)]
            dist.all_gather(parts, flat.contiguous(), group=cfg.group)
            flat_all = torch.stack(parts)
        else:
            flat_all = flat[None]
        bad = [j for j in range(R) if float(flat_all[j, -1]) != 0.0]
        if failed is not None:
            raise failed
        if bad:
            raise RuntimeError(f"context_parallel_vla: the local op failed on rank(s) {bad}; see their errors")
        gathered = flat_all[:, :-1].reshape(R, *slot.shape).clone()
        with torch.enable_grad() if needs else torch.no_grad():
            G = gathered.requires_grad_(needs)
            o_ext_l = o_ext.detach().to(cfg.cdt).requires_grad_(needs)  # the op's output is in the input dtype
            o, S_f, A_f = _combine(cfg, G, o_ext_l)
        if needs:
            ctx.cfg = cfg
            ctx.graph = dict(q=q_, k=k_, v=v_, u=u_, A_in=A_in, A_out=A_out, S_start=S_start, o_ext=o_ext,
                             S_ext_out=S_ext_out, G=G, o_ext_l=o_ext_l, outs=(o, S_f, A_f))
            ctx.in_dtypes = (q.dtype, S0.dtype, A0.dtype)
        return o.detach().to(q.dtype), S_f.detach(), A_f.detach()

    @staticmethod
    def backward(ctx, g_o, g_S, g_A):
        cfg, gr = ctx.cfg, ctx.graph
        r, R, K, V = cfg.rank, cfg.world, cfg.K, cfg.V
        # step 3 backward, locally
        o, S_f, A_f = gr["outs"]
        g_G, g_oext = torch.autograd.grad(
            (o, S_f, A_f), (gr["G"], gr["o_ext_l"]),
            (g_o.to(o.dtype), g_S.to(S_f.dtype), g_A.to(A_f.dtype)), allow_unused=True)
        g_G = torch.zeros_like(gr["G"]) if g_G is None else g_G.contiguous()
        g_oext = torch.zeros_like(gr["o_ext_l"]) if g_oext is None else g_oext
        # the gathered maps were read on every rank: sum their gradients, keep this rank's slot
        if R > 1:
            dist.all_reduce(g_G, group=cfg.group)
        g_slot = g_G[r]
        # step 2 backward, locally (every rank at once)
        ins = [gr["q"], gr["k"], gr["v"], gr["u"], gr["A_in"]] + ([gr["S_start"]] if r == 0 else [])
        grads = torch.autograd.grad((gr["S_ext_out"], gr["o_ext"]), ins,
                                    (g_slot[..., :K + V], g_oext.to(gr["o_ext"].dtype)),
                                    allow_unused=True, retain_graph=True)  # A's symmetrisation is shared
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(ins, grads)]
        g_q, g_k, g_v, g_u, g_Ain = grads[:5]
        g_S0 = grads[5] if r == 0 else None
        # step 1 backward: the gradient of A passes from the last rank to the first
        g_Aout = g_slot[..., K + V:]
        if r < R - 1:
            buf = torch.empty_like(g_Aout)
            dist.recv(buf, src=_global_rank(cfg.group, r + 1), group=cfg.group)
            g_Aout = g_Aout + buf
        g_u2, g_Ain2 = torch.autograd.grad(gr["A_out"], (gr["u"], gr["A_in"]), g_Aout, allow_unused=True)
        if g_u2 is not None:
            g_u = g_u + g_u2
        if g_Ain2 is not None:
            g_Ain = g_Ain + g_Ain2
        if r > 0:
            dist.send(g_Ain.contiguous(), dst=_global_rank(cfg.group, r - 1), group=cfg.group)
        g_A0 = g_Ain if r == 0 else None
        dt, dS, dA = ctx.in_dtypes
        ctx.graph = None
        return (None, g_q.to(dt), g_k.to(dt), g_v.to(dt), g_u.to(dt),
                None if g_S0 is None else g_S0.to(dS), None if g_A0 is None else g_A0.to(dA))


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------

def context_parallel_vla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    *,
    group=None,
    lambda0: float = 0.1,
    scale: Optional[float] = None,
    period: int = 64,
    nudge_eps: float = 1e-3,
    delta_min: float = 1e-4,
    eps: float = 1e-6,
    initial_state: Optional[Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]] = None,
    output_final_state: bool = False,
    offset: OffsetLike = 0,
    cu_seqlens: Optional[torch.Tensor] = None,
    op: Optional[Callable] = None,
    op_kwargs: Optional[dict] = None,
    a_chunk_size: int = 64,
    max_width: Optional[int] = None,
    a_pass: str = "auto",
):
    """VLA over one sequence split across the ranks of ``group`` (SPEC §1-§3 semantics).

    Call it on every rank of ``group`` (default: the default process group; without an initialised
    process group it runs as one rank) with that rank's piece of the inputs: q, k, u [B, T_r, H, K],
    v [B, T_r, H, V]; rank 0 holds the first tokens, rank r the tokens after rank r - 1's. Pieces may
    differ in length (T_r >= 1); B, H, K, V and the dtype must agree. Keyword arguments mean what they
    mean for ``naive_recurrent_vla``, for the whole sequence: ``offset`` is what the sequence consumed
    before rank 0's first token (each rank adds the lengths of the pieces before its own), and
    ``initial_state`` is read on rank 0 only (other ranks may pass None). ``cu_seqlens`` is not
    supported (split packed batches by sequence instead).

    ``op`` is the single-process op each rank runs on its piece (default ``vla.ops.chunk_vla`` when
    present, else ``naive_recurrent_vla``), with ``op_kwargs`` passed on (``chunk_size``, ``backend``).
    ``a_pass`` picks how the rank-to-rank penalty-inverse pass (step 1) runs: ``"op"`` calls the op
    with one zero value column and keeps its final A (a kernel on a GPU), ``"woodbury"`` runs
    :func:`penalty_inverse_pass` (PyTorch, chunks of ``a_chunk_size``, cheaper on a CPU); ``"auto"``:
    "op" for CUDA tensors, "woodbury" otherwise. Each rank runs the
    op with K + V value columns (step 2 of the module docstring); ``max_width`` caps the columns of
    one call (the rest go to further calls, which recompute the write directions): default 128 for
    CUDA tensors (the Triton kernels' limit), no cap otherwise.

    The op receives the inputs in their own dtype (it computes in float32, float64 for float64
    input); the maps are combined in that compute dtype and the output is rounded to q's dtype once.

    Returns ``(o, final_state)``: o [B, T_r, H, V], this rank's output piece in q's dtype;
    ``final_state = (S, A)`` of the whole sequence, in the compute dtype, on every rank (None unless
    ``output_final_state``). Differentiable: when any input needs a gradient, every rank must call
    ``backward`` through its outputs (the backward runs collectives). The gradient of the initial
    state appears on rank 0; that of the initial A is symmetrised (A enters through its symmetric part).
    """
    rank, world = _group_info(group)
    if op is None:
        op = _default_op()
    if not callable(op):
        raise ValueError(f"op must be a callable with the VLA op's signature, got {op!r}")
    op_kwargs = dict(op_kwargs or {})
    if not isinstance(op_kwargs, dict):
        raise ValueError("op_kwargs must be a dict")
    check_hyper("a_chunk_size", a_chunk_size, integer=True, positive=True)
    if a_pass not in ("auto", "op", "woodbury"):
        raise ValueError(f"a_pass must be 'auto', 'op' or 'woodbury', got {a_pass!r}")
    if a_pass == "auto":
        a_pass = "op" if isinstance(q, torch.Tensor) and q.is_cuda else "woodbury"
    if max_width is None and isinstance(q, torch.Tensor) and q.is_cuda:
        max_width = 128
    if max_width is not None:
        check_hyper("max_width", max_width, integer=True, positive=True)
    if world == 1:
        if cu_seqlens is not None:
            raise ValueError("cu_seqlens is not supported by context_parallel_vla; split packed batches by sequence")
        return op(q, k, v, u, lambda0=lambda0, scale=scale, period=period, nudge_eps=nudge_eps,
                  delta_min=delta_min, eps=eps, initial_state=initial_state,
                  output_final_state=output_final_state, offset=offset, **op_kwargs)

    # Validate locally, then agree on the layout; every rank raises if any rank's input is bad, so
    # that no rank is left waiting in a collective.
    error = None
    info = None
    try:
        if cu_seqlens is not None:
            raise ValueError("cu_seqlens is not supported by context_parallel_vla; split packed batches by sequence")
        info = check_vla_inputs(q, k, v, u, lambda0=lambda0, scale=scale, period=period, nudge_eps=nudge_eps,
                                delta_min=delta_min, eps=eps,
                                initial_state=initial_state if rank == 0 else None,
                                offset=offset, cu_seqlens=None)
        if info.T < 1:
            raise ValueError(f"every rank's piece must hold at least one token; q has T={info.T} on rank {rank}")
    except ValueError as exc:
        error = exc
    needs_grad = _needs_grad(q, k, v, u, *(initial_state if rank == 0 and initial_state is not None else ()))
    if info is not None:
        meta = [1, info.B, info.T, info.H, info.K, info.V, _DTYPE_CODES.get(q.dtype, 0), int(needs_grad),
                *info.offsets.tolist()]
    else:
        meta = [0, 0, 0, 0, 0, 0, 0, int(needs_grad)] + [0] * (q.shape[0] if q.dim() == 4 else 1)
    dev = q.device if isinstance(q, torch.Tensor) else torch.device("cpu")
    width = torch.tensor([len(meta)], dtype=torch.int64, device=dev)
    widths = [torch.empty_like(width) for _ in range(world)]
    dist.all_gather(widths, width, group=group)
    wmax = int(torch.stack(widths).max())
    mine = torch.tensor(meta + [0] * (wmax - len(meta)), dtype=torch.int64, device=dev)
    metas = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(metas, mine, group=group)
    metas = torch.stack(metas).cpu()
    if error is not None:
        raise error
    bad = [j for j in range(world) if int(metas[j, 0]) == 0]
    if bad:
        raise ValueError(f"context_parallel_vla: invalid input on rank(s) {bad} (see their errors)")
    if not bool((metas[:, [1, 3, 4, 5, 6]] == metas[0, [1, 3, 4, 5, 6]]).all()):
        raise ValueError("q, k, v, u must have the same B, H, K, V and dtype on every rank "
                         f"(rows: ok, B, T, H, K, V, dtype, grad): {metas[:, :8].tolist()}")
    if not bool((metas[:, 7] == metas[0, 7]).all()):
        raise ValueError("either every rank's inputs need gradients or none do (the backward runs "
                         f"collectives); per rank: {metas[:, 7].tolist()}")
    if not bool((metas[:, 8:8 + info.N] == metas[0, 8:8 + info.N]).all()):
        raise ValueError(f"offset must be the same on every rank (the whole sequence's), got {metas[:, 8:8 + info.N].tolist()}")
    lengths = metas[:, 2]
    offsets = info.offsets + int(lengths[:rank].sum())

    cdt = compute_dtype(q.dtype)
    N, H, K, V = info.N, info.H, info.K, info.V
    S0 = A0 = None
    if rank == 0 and initial_state is not None:
        S0, A0 = initial_state
    if S0 is None:
        S0 = torch.zeros(N, H, K, V, dtype=cdt, device=q.device)
    if A0 is None:
        A0 = (torch.eye(K, dtype=cdt, device=q.device) / lambda0).expand(N, H, K, K).contiguous()
    cfg = _Config(rank=rank, world=world, group=group, op=op, op_kwargs=op_kwargs, cdt=cdt, K=K, V=V,
                  lambda0=lambda0, scale=default_scale(scale, K), period=period, nudge_eps=nudge_eps,
                  delta_min=delta_min, eps=eps, offsets=offsets, needs_grad=needs_grad,
                  a_chunk_size=a_chunk_size, max_width=max_width, a_pass=a_pass)
    o, S_f, A_f = _ContextParallelVLA.apply(cfg, q, k, v, u, S0, A0)
    return o, ((S_f, A_f) if output_final_state else None)
