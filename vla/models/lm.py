"""A small causal language model, readable in one sitting (in the manner of nanoGPT).

Token and learned position embeddings, ``n_layers`` pre-norm blocks (LayerNorm -> [short causal
convolution] -> mixer -> residual, LayerNorm -> GELU MLP -> residual), a final LayerNorm and an
output head tied to the token embedding. The mixer is chosen by name from ``vla.layers.MIXERS``.
``short_conv`` (kernel size, 0 = none) puts a depthwise causal convolution before the mixer, as
flash-linear-attention's and zoology's models do: it lets a layer see the previous tokens directly,
which MQAR needs to bind a value to its key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..layers import MIXERS, LayerCache, ShortConvolution


@dataclass
class BlockCache:
    """A block's decoding state: its mixer's cache and the short convolution's last inputs."""

    mixer: LayerCache
    conv: Optional[torch.Tensor] = None

    @property
    def offset(self) -> int:
        return self.mixer.offset


@dataclass
class ModelConfig:
    vocab_size: int = 128
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 256
    mixer: str = "vla"
    mode: str = "auto"                                 # the op back end (see vla.layers)
    backend: str = "auto"                              # the chunk form's: "auto", "torch", "triton"
    mixer_kwargs: dict = field(default_factory=dict)   # e.g. {"readout": "paper"} for VLA
    short_conv: int = 0                                # kernel of a causal conv before the mixer (0: none)

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {self.mixer!r}")
        if isinstance(self.short_conv, bool) or not isinstance(self.short_conv, int) or self.short_conv < 0:
            raise ValueError(f"short_conv must be an int >= 0 (kernel size, 0 = none), got {self.short_conv!r}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.proj(torch.nn.functional.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.conv = ShortConvolution(cfg.d_model, cfg.short_conv) if cfg.short_conv else None
        self.mixer = MIXERS[cfg.mixer](cfg.d_model, cfg.n_heads, mode=cfg.mode, backend=cfg.backend,
                                        **cfg.mixer_kwargs)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg.d_model, cfg.d_ff)

    def forward(self, x, cache: Optional[BlockCache] = None, use_cache: bool = False):
        h = self.ln_1(x)
        conv_state = None
        if self.conv is not None:
            h, conv_state = self.conv(h, cache.conv if cache is not None else None, use_cache)
        h, mixer_cache = self.mixer(h, cache=cache.mixer if cache is not None else None, use_cache=use_cache)
        x = x + h
        x = x + self.mlp(self.ln_2(x))
        return x, (BlockCache(mixer_cache, conv_state) if use_cache else None)


class LanguageModel(nn.Module):
    """``model(input_ids [B, T]) -> (logits [B, T, vocab], cache or None)``.

    Decoding: ``logits, cache = model(prompt, use_cache=True)``, then
    ``logits, cache = model(next_ids [B, 1], cache=cache, use_cache=True)``; the outputs equal those
    of one call on the whole sequence. ``cache`` is a list with one ``BlockCache`` per block.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):  # (the short convolution keeps PyTorch's init)
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, cache: Optional[List[BlockCache]] = None,
                use_cache: bool = False) -> Tuple[torch.Tensor, Optional[List[BlockCache]]]:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
            raise ValueError("input_ids must be an integer tensor [B, T]")
        B, T = input_ids.shape
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"cache must hold one entry per block ({len(self.blocks)}), got {len(cache)}")
        start = cache[0].offset if cache is not None else 0
        if start + T > self.cfg.max_len:
            raise ValueError(f"input_ids reach position {start + T} > max_len={self.cfg.max_len}")
        pos = torch.arange(start, start + T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(pos)
        new_cache = [] if use_cache else None
        for i, block in enumerate(self.blocks):
            x, c = block(x, cache=cache[i] if cache is not None else None, use_cache=use_cache)
            if use_cache:
                new_cache.append(c)
        return self.head(self.ln_f(x)), new_cache
