"""Functional recurrences: ``[B, T, H, D]`` in, ``(o, final_state)`` out (SPEC §2).

Every back end of an op shares one signature and one argument checker; ``vla``, ``delta_rule`` and
``linear_attn`` dispatch among them (``mode=``).
"""

from .delta_rule.chunk import chunk_delta_rule
from .delta_rule.naive import naive_recurrent_delta_rule
from .linear_attn.chunk import chunk_linear_attn
from .linear_attn.naive import naive_recurrent_linear_attn
from .vla.chunk import chunk_vla
from .vla.naive import naive_recurrent_vla
# `vla`, `delta_rule` and `linear_attn` are the subpackages themselves, made callable: calling one
# runs its dispatcher (vla.ops.dispatch), importing from it reaches its back ends.
from . import delta_rule, linear_attn, vla


def fused_recurrent_vla(*args, **kwargs):
    """The fused recurrent Triton kernel (SPEC §2); see ``vla.ops.vla.fused_recurrent``."""
    from .vla.fused_recurrent import fused_recurrent_vla as _impl

    return _impl(*args, **kwargs)


__all__ = [
    "naive_recurrent_vla",
    "chunk_vla",
    "fused_recurrent_vla",
    "vla",
    "naive_recurrent_delta_rule",
    "chunk_delta_rule",
    "delta_rule",
    "naive_recurrent_linear_attn",
    "chunk_linear_attn",
    "linear_attn",
]
