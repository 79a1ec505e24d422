"""The MQAR trainer: ``train(TrainConfig) -> TrainResult`` and ``evaluate``."""

from .trainer import (TrainConfig, TrainResult, evaluate, load_checkpoint, lr_factor,
                      model_from_checkpoint, train)

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "load_checkpoint",
           "model_from_checkpoint", "lr_factor"]
