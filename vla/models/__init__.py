"""Small models used by the experiments."""

from .lm import Block, LanguageModel, ModelConfig

__all__ = ["LanguageModel", "ModelConfig", "Block"]
