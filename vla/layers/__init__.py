"""Token-mixing layers with one constructor signature ``(hidden_size, num_heads, head_dim=None,
*, ..., mode="auto")`` and one call ``layer(x, cache=None, use_cache=False) -> (y, cache)``.

``MIXERS`` maps the names the models and experiments use to the classes.
"""

from .cache import LayerCache
from .delta_net import DeltaNet
from .linear_attn import LinearAttention
from .short_conv import ShortConvolution
from .softmax_attn import SoftmaxAttention
from .vla import VariationalLinearAttention

MIXERS = {
    "vla": VariationalLinearAttention,
    "deltanet": DeltaNet,
    "linear_attn": LinearAttention,
    "softmax": SoftmaxAttention,
}

__all__ = ["LayerCache", "ShortConvolution", "DeltaNet", "LinearAttention", "SoftmaxAttention",
           "VariationalLinearAttention", "MIXERS"]
