"""The one place where the layers pick the op they call.

The layers call the dispatchers ``vla.ops.vla``, ``vla.ops.delta_rule`` and ``vla.ops.linear_attn``
(``mode="auto" | "naive" | "chunk" | "fused_recurrent"``).
"""

from __future__ import annotations

import vla.ops as _ops

MODES = ("auto", "naive", "chunk", "fused_recurrent")


def check_mode(mode: str, modes=MODES) -> str:
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    return mode


def check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two, got {chunk_size!r}")
    return chunk_size


BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _dispatch(name: str, mode: str, chunk_size: int, backend: str):
    fn = getattr(_ops, name)  # the dispatcher: vla.ops.vla, vla.ops.delta_rule, vla.ops.linear_attn

    def call(*args, **kwargs):
        return fn(*args, mode=mode, chunk_size=chunk_size, backend=backend, **kwargs)
    return call


def vla_op(mode: str, chunk_size: int = 64, backend: str = "auto"):
    """The VLA op for ``mode``: ``op(q, k, v, u, **kwargs) -> (o, final_state)``."""
    return _dispatch("vla", mode, chunk_size, backend)


def delta_rule_op(mode: str, chunk_size: int = 64, backend: str = "auto"):
    return _dispatch("delta_rule", mode, chunk_size, backend)


def linear_attn_op(mode: str, chunk_size: int = 64, backend: str = "auto"):
    return _dispatch("linear_attn", mode, chunk_size, backend)
