from .chunk import chunk_vla
from .naive import naive_recurrent_vla

__all__ = ["naive_recurrent_vla", "chunk_vla"]

from ..dispatch import vla as _dispatch  # noqa: E402
from ..utils import make_callable_package  # noqa: E402

make_callable_package(__name__, _dispatch)  # `vla.ops.vla(...)` calls the dispatcher
