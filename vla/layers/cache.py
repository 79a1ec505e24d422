"""The per-layer decoding cache shared by every mixer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch


@dataclass
class LayerCache:
    """What one mixer layer keeps between decoding calls.

    state:   the op's recurrent state ((S, A) for VLA, (S,) for DeltaNet, (S, z) for linear
             attention) or, for softmax attention, the keys and values seen so far ([B, H, t, D]).
    offset:  tokens each sequence has already consumed (the same for the whole batch).
    key_sum: VLA with ``readout="paper"`` only: the running sum of phi(k), [B, H, K].
    """

    state: Tuple[torch.Tensor, ...]
    offset: int
    key_sum: Optional[torch.Tensor] = None
