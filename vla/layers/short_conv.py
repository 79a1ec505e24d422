"""A short causal depthwise convolution over time (as flash-linear-attention's and zoology's models
put before their mixers), with a decoding cache."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class ShortConvolution(nn.Module):
    """``y_t = sum_{j<kernel_size} w_j * x_{t-j}`` per channel (zero before the sequence start).

    ``forward(x [B, T, D], state=None, use_cache=False) -> (y, state)``; ``state`` holds the last
    ``kernel_size - 1`` inputs [B, kernel_size - 1, D], so decoding token by token equals the
    whole-sequence forward.
    """

    def __init__(self, hidden_size: int, kernel_size: int = 4):
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size, groups=hidden_size, bias=True)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B, T, D = x.shape
        past = state if state is not None else x.new_zeros(B, self.kernel_size - 1, D)
        full = torch.cat([past.to(x.dtype), x], dim=1)                       # [B, K-1+T, D]
        y = F.conv1d(full.transpose(1, 2), self.conv.weight, self.conv.bias, groups=D).transpose(1, 2)
        new_state = full[:, full.shape[1] - (self.kernel_size - 1):] if use_cache else None
        return y, new_state
