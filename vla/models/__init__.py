"""Small models used by the experiments."""

from .lm import Block, BlockCache, LanguageModel, ModelConfig

__all__ = ["LanguageModel", "ModelConfig", "Block", "BlockCache"]
