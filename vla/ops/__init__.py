"""Functional recurrences: ``[B, T, H, D]`` in, ``(o, final_state)`` out (SPEC §2)."""

from .delta_rule import naive_recurrent_delta_rule
from .linear_attn import naive_recurrent_linear_attn
from .vla import naive_recurrent_vla

__all__ = [
    "naive_recurrent_vla",
    "naive_recurrent_delta_rule",
    "naive_recurrent_linear_attn",
]
