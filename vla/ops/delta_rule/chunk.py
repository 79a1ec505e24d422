"""DeltaNet in chunkwise form: phase 2 of SPEC §3 with read key k and write key beta * k.

``backend="auto"`` uses flash-linear-attention's ``chunk_delta_rule`` for bf16 / fp16 CUDA tensors when
the package is installed, and the PyTorch form (``vla.ops.common.chunk_delta``) otherwise.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..common.chunk_delta import chunk_generalized_delta, from_chunks, to_chunks
from ..utils import ChunkLayout, check_chunk_size, compute_dtype, default_scale
from .naive import check_delta_rule_inputs


def _fla_chunk_delta_rule():
    try:
        from fla.ops.delta_rule import chunk_delta_rule as fla_chunk_delta_rule
    except Exception:
        return None
    return fla_chunk_delta_rule


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: Optional[float] = None,
    initial_state: Optional[Tuple[Optional[torch.Tensor]]] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
    backend: str = "auto",
):
    """Chunkwise DeltaNet; same arguments and results as ``naive_recurrent_delta_rule``.

    ``backend``: "torch", "fla" (flash-linear-attention's kernel: CUDA, bf16 / fp16 only), or "auto" (fla where
    it applies, else torch).
    """
    if isinstance(initial_state, torch.Tensor):
        initial_state = (initial_state,)
    info = check_delta_rule_inputs(q, k, v, beta, scale=scale, initial_state=initial_state, cu_seqlens=cu_seqlens)
    check_chunk_size(chunk_size, 1, 0.0)
    if backend not in ("auto", "torch", "fla"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'fla', got {backend!r}")
    scale = default_scale(scale, info.K)
    S0 = initial_state[0] if initial_state is not None else None
    # flash-linear-attention's kernel refuses fp32 inputs (fla-core 0.6.0): "auto" takes it for bf16 / fp16 only
    low = q.dtype in (torch.bfloat16, torch.float16)
    fla = _fla_chunk_delta_rule() if backend != "torch" and low and q.is_cuda else None
    if backend == "fla" and fla is None:
        raise ValueError("backend='fla' needs bf16 or fp16 CUDA tensors and the flash-linear-attention package (fla), "
                         f"got q of dtype {q.dtype} on {q.device}")
    if fla is not None:
        o, S = fla(q, k, v, beta, scale=scale, initial_state=S0, output_final_state=output_final_state,
                   cu_seqlens=cu_seqlens)
        return o, ((S,) if output_final_state else None)
    cdt = compute_dtype(q.dtype)
    if S0 is None:
        S0 = torch.zeros(info.N, info.H, info.K, info.V, dtype=cdt, device=q.device)
    layout = ChunkLayout(info, chunk_size, q.device)
    qc, kc, vc = (to_chunks(layout.pad(x.to(cdt)), chunk_size) for x in (q, k, v))
    bc = to_chunks(layout.pad(beta.to(cdt).unsqueeze(-1)), chunk_size)
    o, S = chunk_generalized_delta(qc, kc, kc * bc, vc, S0.to(cdt), scale=scale, delta=True)
    o = layout.unpad(from_chunks(o, info.N))
    return o.to(q.dtype), ((S,) if output_final_state else None)
