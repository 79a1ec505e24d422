"""The MQAR trainer: ``train(TrainConfig) -> TrainResult`` and ``evaluate``; ``train_grouped`` trains
several runs as one batched model (same results as training each alone)."""

from .grouped import GroupedLM, train_grouped
from .trainer import (TrainConfig, TrainResult, evaluate, load_checkpoint, lr_factor,
                      model_from_checkpoint, train)

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "load_checkpoint",
           "model_from_checkpoint", "lr_factor", "GroupedLM", "train_grouped"]
