from .naive import naive_recurrent_linear_attn

__all__ = ["naive_recurrent_linear_attn"]
