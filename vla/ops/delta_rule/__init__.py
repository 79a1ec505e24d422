from .chunk import chunk_delta_rule
from .naive import naive_recurrent_delta_rule

__all__ = ["naive_recurrent_delta_rule", "chunk_delta_rule"]

from ..dispatch import delta_rule as _dispatch  # noqa: E402
from ..utils import make_callable_package  # noqa: E402

make_callable_package(__name__, _dispatch)  # `vla.ops.delta_rule(...)` calls the dispatcher
