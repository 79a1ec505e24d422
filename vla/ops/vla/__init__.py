from .naive import naive_recurrent_vla

__all__ = ["naive_recurrent_vla"]
