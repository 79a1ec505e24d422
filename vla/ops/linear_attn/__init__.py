from .chunk import chunk_linear_attn
from .naive import naive_recurrent_linear_attn

__all__ = ["naive_recurrent_linear_attn", "chunk_linear_attn"]

from ..dispatch import linear_attn as _dispatch  # noqa: E402
from ..utils import make_callable_package  # noqa: E402

make_callable_package(__name__, _dispatch)  # `vla.ops.linear_attn(...)` calls the dispatcher
