"""Data parallelism for the trainer: what ``vla.train.train`` needs to run under ``torchrun``.

One object, :class:`DataParallel`, holds everything that differs between one process and several:

- **process group**: joined from torchrun's environment (``WORLD_SIZE > 1``) when none exists yet,
  NCCL for CUDA devices and gloo otherwise; an existing group (a test's, a user's) is used as is.
  Without either it is one rank and every method below is the identity.
- **device**: ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (one GPU per process).
- **model**: wrapped in ``DistributedDataParallel`` (gradients averaged across ranks during backward).
- **batch**: every rank draws the step's *global* batch from the single-process stream
  (``task.train_batch(step, batch_size, seed, rank=0)``) and keeps its contiguous slice, so the
  examples of a step do not depend on the number of ranks.
- **loss**: the trainer's loss is a mean over answer positions. Ranks may hold different numbers of
  answers, so each rank's mean is reweighted by ``world * local_answers / global_answers`` before
  DDP's average: the averaged gradient is then exactly the gradient of the global batch's mean, as
  on one process. :meth:`global_value` reports that global mean (one ``all_reduce``).
- **files**: the trainer writes checkpoints on rank 0 only; :meth:`barrier` after a write keeps the
  other ranks from reading a checkpoint before it exists.

The result: for the same global batch size, losses and weights equal the one-process run up to
float rounding (the batch's sum is reduced in a different order), and a run can be stopped and
resumed with any number of ranks.
"""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DataParallel"]


class DataParallel:
    """See the module docstring. ``device``: the trainer's configured device ("cpu", "cuda", ...)."""

    def __init__(self, device="cpu"):
        device = torch.device(device)
        self.owns_group = False
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and not dist.is_initialized() and env_world > 1:
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend)
            self.owns_group = True
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        if self.active and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
        self.device = device

    # ---------------------------------------------------------------- model
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to call in training steps: DDP around ``model`` on several ranks, else ``model``.

        Keep using ``model`` itself for ``state_dict``, evaluation and checkpoints.
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    # ---------------------------------------------------------------- data
    def batch(self, task, step: int, batch_size: int, seed: int, ignore_index: int = -100
              ) -> Tuple[np.ndarray, np.ndarray, float]:
        """This rank's slice of the step's global batch, and the loss weight (1.0 on one rank)."""
        x, y = task.train_batch(step, batch_size, seed, 0)
        if not self.active:
            return x, y, 1.0
        if batch_size % self.world:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of ranks ({self.world})")
        per = batch_size // self.world
        sl = slice(self.rank * per, (self.rank + 1) * per)
        local = int((y[sl] != ignore_index).sum())
        total = int((y != ignore_index).sum())
        if local == 0:
            raise ValueError(f"rank {self.rank}'s slice of the batch holds no answer position; use a larger batch_size")
        return x[sl], y[sl], self.world * local / total

    # ---------------------------------------------------------------- reductions
    def global_value(self, weighted_loss: torch.Tensor) -> float:
        """The global batch's mean loss from every rank's weighted loss (their average)."""
        value = weighted_loss.detach().clone()
        if self.active:
            dist.all_reduce(value)
            value /= self.world
        return float(value)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group if this object joined it."""
        if self.owns_group:
            dist.destroy_process_group()
            self.owns_group = False
