"""One entry point per op that picks a back end (SPEC §2): ``vla``, ``delta_rule``, ``linear_attn``.

``mode="auto"``: on CUDA, short inputs that need no gradient (decoding) go to the fused recurrent
kernel, everything else to the chunk form (Triton on CUDA, PyTorch elsewhere); on the CPU, the
PyTorch chunk form. ``"naive"`` is the step-by-step definition.
"""

from __future__ import annotations

from .utils import needs_grad

_MODES = ("auto", "naive", "chunk", "fused_recurrent")
# Below this many tokens per sequence, a gradient-free CUDA call goes to the fused recurrent kernel.
FUSED_RECURRENT_MAX_T = 64


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def _fused_available() -> bool:
    try:
        from .vla.fused_recurrent import fused_recurrent_vla  # noqa: F401
    except Exception:
        return False
    return True


def vla(q, k, v, u, *, mode: str = "auto", chunk_size: int = 64, backend: str = "auto", **kwargs):
    """Variational linear attention through the chosen back end; arguments as ``naive_recurrent_vla``
    (plus ``chunk_size`` and ``backend`` for the chunk form)."""
    _check_mode(mode)
    if mode == "auto":
        init = kwargs.get("initial_state") or ()
        short = q.dim() == 4 and q.shape[1] <= FUSED_RECURRENT_MAX_T
        if q.is_cuda and short and not needs_grad(q, k, v, u, *init) and _fused_available():
            mode = "fused_recurrent"
        else:
            mode = "chunk"
    if mode == "naive":
        from .vla.naive import naive_recurrent_vla

        return naive_recurrent_vla(q, k, v, u, **kwargs)
    if mode == "fused_recurrent":
        from .vla.fused_recurrent import fused_recurrent_vla

        return fused_recurrent_vla(q, k, v, u, **kwargs)
    from .vla.chunk import chunk_vla

    return chunk_vla(q, k, v, u, chunk_size=chunk_size, backend=backend, **kwargs)


def delta_rule(q, k, v, beta, *, mode: str = "auto", chunk_size: int = 64, backend: str = "auto", **kwargs):
    """DeltaNet through the chosen back end ("naive" or "chunk"; "auto" = "chunk")."""
    _check_mode(mode)
    if mode == "fused_recurrent":
        raise ValueError("mode='fused_recurrent' is not implemented for delta_rule; use 'chunk' or 'naive'")
    if mode == "naive":
        from .delta_rule.naive import naive_recurrent_delta_rule

        return naive_recurrent_delta_rule(q, k, v, beta, **kwargs)
    from .delta_rule.chunk import chunk_delta_rule

    return chunk_delta_rule(q, k, v, beta, chunk_size=chunk_size, backend=backend, **kwargs)


def linear_attn(q, k, v, *, mode: str = "auto", chunk_size: int = 64, backend: str = "auto", **kwargs):
    """Linear attention through the chosen back end ("naive" or "chunk"; "auto" = "chunk")."""
    _check_mode(mode)
    if mode == "fused_recurrent":
        raise ValueError("mode='fused_recurrent' is not implemented for linear_attn; use 'chunk' or 'naive'")
    if mode == "naive":
        from .linear_attn.naive import naive_recurrent_linear_attn

        return naive_recurrent_linear_attn(q, k, v, **kwargs)
    from .linear_attn.chunk import chunk_linear_attn

    return chunk_linear_attn(q, k, v, chunk_size=chunk_size, backend=backend, **kwargs)
