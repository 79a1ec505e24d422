from .naive import naive_recurrent_delta_rule

__all__ = ["naive_recurrent_delta_rule"]
