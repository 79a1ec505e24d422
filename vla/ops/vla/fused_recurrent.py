"""Fused recurrent VLA: the whole recurrence of SPEC §1 in one Triton kernel (forward only).

Same arguments and results as :func:`vla.ops.vla.naive.naive_recurrent_vla`, validated by the same
checker. Use it for inference: prefill of moderate length and, above all, decoding one token at a
time. It has no backward: for training use ``chunk_vla`` (or the naive op).

Decoding, one token at a time with the state carried::

    state, pos = None, 0
    for each new token (q_t, k_t, v_t, u_t of shape [B, 1, H, D]):
        o_t, state = fused_recurrent_vla(q_t, k_t, v_t, u_t, initial_state=state,
                                         output_final_state=True, offset=pos)
        pos += 1

``offset`` keeps the periodic nudge on the absolute positions, so the steps reproduce the
whole-sequence result exactly. Each call costs one kernel launch plus the argument checks; the
finiteness check reads the inputs and synchronises with the GPU, so a decoding loop that trusts its
inputs can wrap itself in ``vla.ops.utils.input_checks(finite=False)`` to keep the GPU queue full.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch

from ..utils import OffsetLike, default_scale, needs_grad
from .naive import check_vla_inputs

MAX_HEAD_DIM = 128


def fused_recurrent_vla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    *,
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
):
    """Variational linear attention, one fused Triton kernel (SPEC §1-2), forward only.

    Args:
        q, k, u: [B, T, H, K]; v: [B, T, H, V]; K, V <= 128. bf16, fp16, fp32 (computed in fp32)
            or fp64 (computed in fp64). CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
        initial_state: ``(S, A)`` with S [N, H, K, V] and A [N, H, K, K] (either may be None).
        offset: tokens each sequence has already consumed (int, or one per sequence).
        cu_seqlens: [N+1] boundaries of packed sequences (B must be 1).
    Returns:
        ``(o, final_state)``: o [B, T, H, V] in q's dtype; final_state ``(S, A)`` in float32
        (float64 for float64 input) when ``output_final_state``, else None.
    """
    info = check_vla_inputs(q, k, v, u, lambda0=lambda0, scale=scale, period=period,
                            nudge_eps=nudge_eps, delta_min=delta_min, eps=eps,
                            initial_state=initial_state, offset=offset, cu_seqlens=cu_seqlens)
    if info.K > MAX_HEAD_DIM:
        raise ValueError(f"k (and q, u) head size K={info.K} is too large for fused_recurrent_vla "
                         f"(at most {MAX_HEAD_DIM}); use chunk_vla or naive_recurrent_vla")
    if info.V > MAX_HEAD_DIM:
        raise ValueError(f"v head size V={info.V} is too large for fused_recurrent_vla "
                         f"(at most {MAX_HEAD_DIM}); use chunk_vla or naive_recurrent_vla")
    S0, A0 = (None, None) if initial_state is None else initial_state
    if needs_grad(q, k, v, u, S0, A0):
        raise NotImplementedError(
            "fused_recurrent_vla is forward-only and got inputs that require grad: use chunk_vla "
            "(or naive_recurrent_vla) for training, or call it under torch.no_grad()")
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise ValueError(f"q is on {q.device}: fused_recurrent_vla needs CUDA tensors "
                         "(or TRITON_INTERPRET=1 to run the kernel through Triton's interpreter)")
    from .triton.fused_recurrent import fused_recurrent_vla_fwd

    o, S, A = fused_recurrent_vla_fwd(
        q, k, v, u, scale=default_scale(scale, info.K), lambda0=lambda0, period=period,
        nudge_eps=nudge_eps, delta_min=delta_min, eps=eps, S0=S0, A0=A0,
        output_final_state=output_final_state, offsets=info.offsets, cu_seqlens=info.cu_seqlens,
        N=info.N, offset_int=offset if type(offset) is int else None)
    return o, ((S, A) if output_final_state else None)
