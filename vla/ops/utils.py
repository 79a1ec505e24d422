"""Shared input checks and small helpers for every op back end.

Every public op (naive, chunk, fused recurrent, and the baselines) validates its arguments here, so
that bad input raises the same ``ValueError`` naming the argument whichever back end is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch

_CHECK_FINITE = True


@contextlib.contextmanager
def input_checks(finite: bool = True):
    """Context manager that turns the (synchronising) finiteness checks on or off.

    The finiteness check reads every input once and synchronises with the device; benchmarks that
    want to time the kernels alone may turn it off. Shape, dtype and argument checks always run.
    """
    global _CHECK_FINITE
    old = _CHECK_FINITE
    _CHECK_FINITE = finite
    try:
        yield
    finally:
        _CHECK_FINITE = old


def needs_grad(*xs) -> bool:
    """Whether autograd would record a call on these tensors (grad mode on and one requires grad)."""
    return torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad for x in xs)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def l2norm(x: torch.Tensor, eps: float = 1e-6, dim: int = -1) -> torch.Tensor:
    """``x / max(||x||, eps)`` along ``dim`` (the SPEC's normalisation, clamp not additive)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(eps)


@dataclass
class SeqInfo:
    """What the checker learned about the batch layout."""

    B: int
    T: int
    H: int
    K: int
    V: int
    N: int  # number of sequences (B, or len(cu_seqlens) - 1)
    offsets: torch.Tensor  # int64 [N], on the CPU
    cu_seqlens: Optional[torch.Tensor]  # int64 [N+1], on the inputs' device, or None
    # what the finiteness check measured at no extra synchronisation, where the caller asked for it
    # (check_inputs' ``witnesses``; empty when the checks are off or deferred): {tensor name: witness}
    norms: dict = field(default_factory=dict)
    # with check_inputs' ``defer_finite``: the finiteness check still to be resolved (PendingFinite)
    pending: Optional["PendingFinite"] = None


def finite_witness(kind: str, x: torch.Tensor) -> torch.Tensor:
    """A scalar whose finiteness proves every element of x finite (NaN and Inf propagate through sums,
    norms and maxima), and which says something about x: "sum"; "row_norm2" the largest squared L2 norm of
    a row (last dimension); "norm2_bound" an upper bound on the largest spectral norm of the trailing matrices,
    min(|A|_F, max(|A|_1, |A|_inf)) (|A|_2 <= sqrt(|A|_1 |A|_inf); the second is exact for a diagonal A, such
    as the default initial A = I / lambda0, where |A|_F is sqrt(K) times too large)."""
    x = x.detach()
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    if kind == "row_norm2" and x.is_cuda and x.dtype != torch.float64 and x.numel() and x.shape[-1] <= 256:
        from .common.row_norm import row_norm2_max  # (one Triton pass; PyTorch's reduction was 5x slower)
        w = row_norm2_max(x)
    elif kind == "row_norm2":
        w = torch.linalg.vector_norm(x, dim=-1, dtype=wide).amax().square()
    elif kind == "norm2_bound":
        a = x.abs()
        sums = torch.maximum(a.sum(-2, dtype=wide).amax(-1), a.sum(-1, dtype=wide).amax(-1))
        w = torch.minimum(torch.linalg.vector_norm(x, dim=(-2, -1), dtype=wide), sums).amax()
    else:
        w = x.sum(dtype=torch.float32)
    return w  # (fp32, or fp64 for fp64 x; torch.stack promotes a mix of both)


class PendingFinite:
    """The finiteness check, with one device synchronisation: one witness per tensor (``kinds`` names it where it
    is not "sum", see finite_witness), all in one vector; only a tensor whose witness is not finite (a bad element,
    or an overflow of large finite values) is looked at element by element. ``resolve()`` computes the witnesses on
    the device, reads them, raises the check's ValueError for a tensor that is not finite and returns {name: witness}
    for the tensors in ``kinds`` ({} when the checks are off). A back end may launch its kernels before
    (check_inputs' ``defer_finite``): the device then starts on them while the host is still at the check, rather
    than waiting for the host at the synchronisation and through the launches that follow; it must call
    ``resolve()`` before it returns anything (and, with ``launch()`` before its kernels, waits there for the check
    alone)."""

    def __init__(self, tensors: dict, kinds: dict):
        self.kinds = kinds
        self.xs = {n: x for n, x in tensors.items() if x.numel()} if _CHECK_FINITE else {}
        self._copy = None  # (pinned host vector, CUDA event) once launch() has run

    def _witnesses(self) -> torch.Tensor:
        return torch.stack([finite_witness(self.kinds.get(n, "sum"), x) for n, x in self.xs.items()])

    def launch(self) -> None:
        """On CUDA: compute the witnesses on a side stream now and copy them to pinned host memory there, without
        waiting. A back end that calls this before launching its kernels then waits in ``resolve()`` only for the
        witnesses, not for its own kernels, and returns while they run (the side stream reads the inputs
        concurrently with them). Elsewhere (CPU tensors) it does nothing: ``resolve()`` computes them."""
        if not self.xs or self._copy is not None:
            return
        x0 = next(iter(self.xs.values()))
        if not x0.is_cuda or not all(x.is_contiguous() for x in self.xs.values()):
            return  # (a copy made on the side stream would stay in its memory pool)
        with torch.cuda.device(x0.device):
            if torch.cuda.is_current_stream_capturing():
                return
        main = torch.cuda.current_stream(x0.device)
        side = _side_stream(x0.device)
        side.wait_stream(main)  # (the inputs may still be being written on the main stream)
        with torch.cuda.stream(side):
            w = self._witnesses()
            host = torch.empty(w.shape, dtype=w.dtype, pin_memory=True)
            host.copy_(w, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)
        self._copy = (host, done)

    def resolve(self) -> dict:
        if not self.xs:
            return {}
        if self._copy is not None:  # (launch() ran: wait for the side stream's copy only)
            host, done = self._copy
            done.synchronize()
            values = host.tolist()
        else:
            values = self._witnesses().tolist()
        for (name, x), w in zip(self.xs.items(), values):
            if not math.isfinite(w) and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name} contains non-finite values (NaN or Inf)")
        return {n: w for n, w in zip(self.xs, values) if n in self.kinds}


@functools.lru_cache(maxsize=None)
def _side_stream(device: torch.device) -> "torch.cuda.Stream":
    """One side stream per CUDA device (kept) for PendingFinite.launch."""
    return torch.cuda.Stream(device=device)


def _check_float_tensor(name: str, x, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")


def check_hyper(name: str, value, *, positive: bool = False, nonneg: bool = False, integer: bool = False):
    """Check one scalar hyperparameter; returns it as float or int."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


OffsetLike = Union[int, Sequence[int], torch.Tensor]


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    key_like: Optional[dict] = None,
    head_like: Optional[dict] = None,
    initial_state: Optional[Sequence[Optional[torch.Tensor]]] = None,
    state_shapes: Sequence[str] = ("KV",),
    state_names: Sequence[str] = ("S",),
    cu_seqlens: Optional[torch.Tensor] = None,
    offset: OffsetLike = 0,
    scale: Optional[float] = None,
    witnesses: Optional[dict] = None,
    defer_finite: bool = False,
) -> SeqInfo:
    """Validate the common arguments of every op.

    q, k: [B, T, H, K]; v: [B, T, H, V]; ``key_like`` tensors have k's shape (VLA's u);
    ``head_like`` tensors are [B, T, H] (DeltaNet's beta). ``initial_state`` is a tuple whose i-th
    entry (or None) has shape [N, H, K, V] ("KV"), [N, H, K, K] ("KK") or [N, H, K] ("K").
    ``witnesses``: {tensor name: finite_witness kind} (e.g. {"u": "row_norm2", "initial_state A":
    "norm2_bound"}) to be measured by the finiteness check and returned in ``SeqInfo.norms``.
    ``defer_finite``: leave the finiteness check's synchronisation to the caller (``SeqInfo.pending``, whose
    ``resolve()`` raises for non-finite values and returns those norms), which must resolve it before it
    returns a result.
    """
    _check_float_tensor("q", q, 4)
    _check_float_tensor("k", k, 4)
    _check_float_tensor("v", v, 4)
    B, T, H, K = k.shape
    if q.shape != k.shape:
        raise ValueError(f"q must have k's shape {tuple(k.shape)}, got {tuple(q.shape)}")
    if v.shape[:3] != (B, T, H):
        raise ValueError(f"v must have shape [B, T, H, V] = [{B}, {T}, {H}, V], got {tuple(v.shape)}")
    V = v.shape[-1]
    if K < 1 or V < 1 or H < 1:
        raise ValueError(f"head sizes must be positive, got H={H}, K={K}, V={V}")
    tensors = {"q": q, "k": k, "v": v}
    for name, x in (key_like or {}).items():
        _check_float_tensor(name, x, 4)
        if x.shape != k.shape:
            raise ValueError(f"{name} must have k's shape {tuple(k.shape)}, got {tuple(x.shape)}")
        tensors[name] = x
    for name, x in (head_like or {}).items():
        _check_float_tensor(name, x, 3)
        if x.shape != (B, T, H):
            raise ValueError(f"{name} must have shape [B, T, H] = {(B, T, H)}, got {tuple(x.shape)}")
        tensors[name] = x
    for name, x in tensors.items():
        if x.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but q has {q.dtype}: all inputs must share one dtype")
        if x.device != q.device:
            raise ValueError(f"{name} is on {x.device} but q is on {q.device}: all inputs must share one device")

    if scale is not None:
        check_hyper("scale", scale)

    # variable-length layout
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor):
            raise ValueError("cu_seqlens must be a torch.Tensor of int64")
        if cu_seqlens.dtype not in (torch.int32, torch.int64) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be a 1-D integer tensor [N+1] with N >= 1, got {cu_seqlens.dtype} {tuple(cu_seqlens.shape)}")
        if B != 1:
            raise ValueError(f"cu_seqlens requires batch size B == 1 (packed sequences), got B={B}")
        cpu = cu_seqlens.detach().to("cpu", torch.int64)
        if int(cpu[0]) != 0:
            raise ValueError(f"cu_seqlens must start at 0, got {int(cpu[0])}")
        if int(cpu[-1]) != T:
            raise ValueError(f"cu_seqlens must end at T={T}, got {int(cpu[-1])}")
        if not bool((cpu[1:] > cpu[:-1]).all()):
            raise ValueError("cu_seqlens must be strictly increasing (every sequence at least one token)")
        N = cpu.numel() - 1
        cu_seqlens = cu_seqlens.to(torch.int64)
    else:
        N = B

    # offsets: one per sequence
    if isinstance(offset, torch.Tensor):
        if offset.dim() == 0:
            offset = offset.reshape(1).expand(N)
        if offset.dim() != 1 or offset.numel() != N or offset.is_floating_point():
            raise ValueError(f"offset must be an int or {N} ints (one per sequence), got {tuple(offset.shape)} {offset.dtype}")
        offsets = offset.detach().to("cpu", torch.int64)
    elif isinstance(offset, bool):
        raise ValueError(f"offset must be an int or one int per sequence, got {offset!r}")
    elif isinstance(offset, int):
        offsets = torch.full((N,), offset, dtype=torch.int64)
    else:
        try:
            offsets = torch.as_tensor(list(offset), dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"offset must be an int or one int per sequence, got {offset!r}") from None
        if offsets.dim() != 1 or offsets.numel() != N:
            raise ValueError(f"offset must be an int or {N} ints (one per sequence), got {len(offsets)} values")
    if bool((offsets < 0).any()):
        raise ValueError(f"offset must be >= 0, got {offsets.tolist()}")

    # initial state
    if initial_state is not None:
        if isinstance(initial_state, torch.Tensor) or not isinstance(initial_state, (tuple, list)):
            raise ValueError(f"initial_state must be a tuple ({', '.join(state_names)}) of tensors or None")
        if len(initial_state) != len(state_shapes):
            raise ValueError(f"initial_state must be a tuple of {len(state_shapes)} ({', '.join(state_names)}), got {len(initial_state)} entries")
        dims = {"K": K, "V": V}
        for sname, kind, x in zip(state_names, state_shapes, initial_state):
            if x is None:
                continue
            want = (N, H) + tuple(dims[c] for c in kind)
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise ValueError(f"initial_state {sname} must be a floating-point tensor of shape {want}")
            if tuple(x.shape) != want:
                raise ValueError(f"initial_state {sname} must have shape [N, H, ...] = {want}, got {tuple(x.shape)}")
            if x.device != q.device:
                raise ValueError(f"initial_state {sname} is on {x.device} but q is on {q.device}")
            tensors[f"initial_state {sname}"] = x
    # every value check at once: one synchronisation (now, or where the caller resolves it)
    pending = PendingFinite(tensors, witnesses or {})
    if defer_finite:
        return SeqInfo(B=B, T=T, H=H, K=K, V=V, N=N, offsets=offsets, cu_seqlens=cu_seqlens, pending=pending)
    return SeqInfo(B=B, T=T, H=H, K=K, V=V, N=N, offsets=offsets, cu_seqlens=cu_seqlens, norms=pending.resolve())


def check_vla_hyper(lambda0, period, nudge_eps, delta_min, eps=1e-6):
    check_hyper("lambda0", lambda0, positive=True)
    check_hyper("period", period, integer=True)
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    check_hyper("nudge_eps", nudge_eps, nonneg=True)
    check_hyper("delta_min", delta_min, positive=True)
    check_hyper("eps", eps, positive=True)


def default_scale(scale: Optional[float], K: int) -> float:
    return K ** -0.5 if scale is None else float(scale)


def seq_bounds(info: SeqInfo):
    """(start, end) of every sequence, as python ints (for back ends that loop over sequences)."""
    if info.cu_seqlens is None:
        return [(0, info.T)] * info.N
    c = info.cu_seqlens.tolist()
    return list(zip(c[:-1], c[1:]))


def run_varlen(dense_fn, info: SeqInfo, seq_tensors: Sequence[torch.Tensor], states: Sequence[Optional[torch.Tensor]]):
    """Apply ``dense_fn(seq_tensors, states, offsets) -> (o, final_states)`` to each packed sequence.

    Used by back ends whose dense path is batched over B: with ``cu_seqlens`` each sequence is cut out
    ([1, T_i, ...]), run with its own state and offset, and the outputs are concatenated again.
    """
    if info.cu_seqlens is None:
        return dense_fn(seq_tensors, states, info.offsets)
    outs, finals = [], []
    for i, (s, e) in enumerate(seq_bounds(info)):
        xs = [x[:, s:e] for x in seq_tensors]
        st = [None if x is None else x[i:i + 1] for x in states]
        o, f = dense_fn(xs, st, info.offsets[i:i + 1])
        outs.append(o)
        finals.append(f)
    o = torch.cat(outs, dim=1)
    final = tuple(torch.cat([f[j] for f in finals], dim=0) for j in range(len(finals[0])))
    return o, final


def check_chunk_size(chunk_size, period: int, nudge_eps: float) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size not in (16, 32, 64):
        raise ValueError(f"chunk_size must be 16, 32 or 64, got {chunk_size!r}")
    if nudge_eps > 0 and period % chunk_size != 0:
        raise ValueError(
            f"period ({period}) must be a multiple of chunk_size ({chunk_size}) while nudges are on "
            f"(nudge_eps={nudge_eps}): the chunk form applies nudges at chunk boundaries")
    return chunk_size


class ChunkLayout:
    """Places every sequence in a zero-padded ``[N, L, H, D]`` batch whose chunk boundaries fall on
    absolute multiples of ``C`` (SPEC §3): sequence n starts at row ``offset_n % C``.

    Zero rows are inert in every recurrence here (a zero key writes nothing, a zero penalty direction
    leaves A unchanged), so the padded batch computes exactly the unpadded one. ``pad`` and ``unpad``
    are differentiable.
    """

    def __init__(self, info: SeqInfo, C: int, device):
        self.info, self.C = info, C
        starts = [s for s, _ in seq_bounds(info)]
        lens = [e - s for s, e in seq_bounds(info)]
        self.lead = [int(o) % C for o in info.offsets.tolist()]
        self.lens = lens
        L = max((r + n + C - 1) // C * C for r, n in zip(self.lead, lens)) if lens else C
        self.L = max(L, C)
        self.nc = self.L // C
        N = info.N
        self.trivial = info.cu_seqlens is None and all(r == 0 for r in self.lead) and info.T == self.L
        if not self.trivial:
            src, dst = [], []
            for n in range(N):
                src_base = starts[n] if info.cu_seqlens is not None else n * info.T
                src.append(torch.arange(src_base, src_base + lens[n]))
                dst.append(torch.arange(n * self.L + self.lead[n], n * self.L + self.lead[n] + lens[n]))
            self.src = torch.cat(src).to(device)
            self.dst = torch.cat(dst).to(device)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, H, D] -> [N, L, H, D]."""
        if self.trivial:
            return x
        B, T, H, D = x.shape
        flat = x.reshape(B * T, H, D)
        out = flat.new_zeros(self.info.N * self.L, H, D)
        out = out.index_copy(0, self.dst, flat.index_select(0, self.src))
        return out.reshape(self.info.N, self.L, H, D)

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """[N, L, H, D] -> [B, T, H, D]."""
        if self.trivial:
            return y
        N, L, H, D = y.shape
        B, T = self.info.B, self.info.T
        flat = y.reshape(N * L, H, D)
        out = flat.new_zeros(B * T, H, D)
        out = out.index_copy(0, self.src, flat.index_select(0, self.dst))
        return out.reshape(B, T, H, D)

    def chunk_end_positions(self) -> torch.Tensor:
        """Absolute position of each chunk's last row, [N, nc] (int64), and whether it is a real token."""
        off = self.info.offsets
        base = off - torch.tensor(self.lead, dtype=torch.int64)
        ends = base[:, None] + torch.arange(1, self.nc + 1, dtype=torch.int64)[None] * self.C
        real = ends <= (off + torch.tensor(self.lens, dtype=torch.int64))[:, None]
        return ends, real


def make_callable_package(module_name: str, fn) -> None:
    """Let a subpackage (``vla.ops.vla``) be called like its dispatcher function.

    SPEC §2 names both a folder ``vla/ops/vla/`` and a function ``vla.ops.vla(...)``; a module whose
    class has ``__call__`` is both, so ``import vla.ops.vla.chunk`` and ``vla.ops.vla(q, k, v, u)``
    work side by side.
    """
    import sys
    import types

    mod = sys.modules[module_name]

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    mod.__class__ = _CallablePackage
    mod.__doc__ = fn.__doc__
