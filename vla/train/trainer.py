"""Training a small model on MQAR: one ``train(config)`` function, no framework around it.

AdamW, linear warmup then cosine decay, gradient clipping, periodic evaluation on a held-out set,
a tqdm progress bar, and checkpoints (model, optimizer, scheduler, step, config, RNG states) written
atomically and resumable: training N steps in one go or N/2, stop, resume, N/2 more gives the same
weights, bit for bit on a CPU. The global batch of a step is a function of (seed, step) only
(``MQARTask.train_batch``), and every file write goes through ``_is_writer()``. Under torchrun the
same function trains with DDP (``vla.distributed.ddp.DataParallel``: each rank takes its slice of
the global batch; same results as one process for the same ``batch_size``; rank 0 writes).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data import IGNORE, MQARTask
from ..distributed.ddp import DataParallel
from ..models import LanguageModel, ModelConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: MQARTask = field(default_factory=MQARTask)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 500           # 0: evaluate only at the end
    eval_examples: int = 1000
    seed: int = 0
    device: str = "cpu"
    out: Optional[str] = None       # folder for checkpoint.pt (None: no checkpoints)
    checkpoint_every: int = 0       # 0: only at the end (and when stopping early)
    resume: bool = True             # continue from out/checkpoint.pt when it exists
    stop_after: Optional[int] = None  # stop (and checkpoint) after this step, e.g. to resume later
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.task, dict):
            self.task = MQARTask(**self.task)
        self.betas = tuple(self.betas)
        for name in ("steps", "batch_size", "eval_examples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip!r}")
        if self.task.length > self.model.max_len:
            raise ValueError(f"model.max_len ({self.model.max_len}) must be >= the task's sequence length ({self.task.length})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class TrainResult:
    model: LanguageModel
    step: int                          # steps done
    history: List[dict]                # one entry per evaluation: step, loss, accuracy, exact_match
    final: Optional[dict]              # the last evaluation (None if stopped before any)
    seconds: float                     # wall time of this call
    train_losses: List[float] = field(default_factory=list)


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """Linear warmup over ``warmup_frac * total`` steps, then cosine decay to 0 at ``total``."""
    warmup = int(round(warmup_frac * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def loss_dtype(logits: torch.Tensor) -> torch.Tensor:
    """Logits for the loss: half precisions in fp32, fp32 and float64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(loss_dtype(logits).reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model: LanguageModel, inputs, labels, *, batch_size: int = 256, device="cpu") -> dict:
    """Per-token accuracy at the answer positions (labels != -100), per-sequence exact match (every
    answer of the sequence right) and the mean loss at the answer positions."""
    was_training = model.training
    model.eval()
    inputs = torch.as_tensor(np.asarray(inputs), dtype=torch.long)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    correct = answers = exact = 0
    loss_sum = 0.0
    for s in range(0, inputs.shape[0], batch_size):
        x = inputs[s:s + batch_size].to(device)
        y = labels[s:s + batch_size].to(device)
        logits, _ = model(x)
        mask = y != IGNORE
        hit = (logits.argmax(-1) == y) & mask
        correct += int(hit.sum())
        answers += int(mask.sum())
        exact += int((hit.sum(1) == mask.sum(1)).sum())
        loss_sum += float(F.cross_entropy(logits[mask].float(), y[mask], reduction="sum"))
    model.train(was_training)
    n = inputs.shape[0]
    return {"accuracy": correct / max(answers, 1), "exact_match": exact / max(n, 1),
            "loss": loss_sum / max(answers, 1), "answers": answers, "sequences": n}


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _is_writer() -> bool:
    """Only rank 0 writes files (checkpoints); every other rank only computes."""
    return _rank() == 0


def save_checkpoint(path: str, state: dict) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    if not _is_writer():
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str, map_location="cpu") -> dict:
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    for key in ("model", "config"):
        if key not in ckpt:
            raise ValueError(f"{path} is not a vla checkpoint (no {key!r} entry)")
    return ckpt


def model_from_checkpoint(path: str, device="cpu", mode: Optional[str] = None) -> LanguageModel:
    """The trained model saved in a checkpoint (``mode`` overrides the op back end)."""
    ckpt = load_checkpoint(path)
    mcfg = dict(ckpt["config"]["model"])
    if mode is not None:
        mcfg["mode"] = mode
    model = LanguageModel(ModelConfig(**mcfg))
    model.load_state_dict(ckpt["model"])
    return model.to(device)


def build_optimizer(model: LanguageModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases, or position/token embeddings' gains)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train(cfg: TrainConfig) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.task``; see the module docstring."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    dp = DataParallel(cfg.device)  # one rank, or DDP under torchrun (vla.distributed.ddp)
    device = dp.device
    torch.manual_seed(cfg.seed)
    model = LanguageModel(cfg.model).to(device)
    net = dp.wrap(model)
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup_frac))
    step, history, losses = 0, [], []
    path = os.path.join(cfg.out, CHECKPOINT) if cfg.out else None
    if path and cfg.resume and os.path.exists(path):
        ckpt = load_checkpoint(path, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, history, losses = ckpt["step"], ckpt.get("history", []), ckpt.get("train_losses", [])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)

    def checkpoint():
        if path is None:
            return
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "step": step, "config": cfg.to_dict(),
                               "rng": rng, "history": history, "train_losses": losses})
        dp.barrier()  # rank 0 wrote it; no rank reads it before it is complete

    test_inputs, test_labels = cfg.task.test_set(cfg.eval_examples, cfg.seed)
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    bar = tqdm(total=cfg.steps, initial=step, disable=not cfg.progress or not dp.is_writer,
               desc=f"{cfg.model.mixer} n={cfg.task.n_pairs}", leave=False, dynamic_ncols=True)
    model.train()
    while step < end:
        x, y, weight = dp.batch(cfg.task, step, cfg.batch_size, cfg.seed)  # this rank's part of the global batch
        x = torch.from_numpy(x).to(device)
        y = torch.from_numpy(y).to(device)
        logits, _ = net(x)
        loss = masked_loss(logits, y) * weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        losses.append(dp.global_value(loss))
        bar.update(1)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            history.append({"step": step, **evaluate(model, test_inputs, test_labels, device=device)})
            bar.set_postfix(loss=f"{losses[-1]:.3f}", acc=f"{history[-1]['accuracy']:.3f}")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < end:
            checkpoint()
    bar.close()
    final = None
    if step >= cfg.steps:
        final = {"step": step, **evaluate(model, test_inputs, test_labels, device=device)}
        if not history or history[-1]["step"] != step:
            history.append(final)
    checkpoint()
    dp.close()
    return TrainResult(model=model, step=step, history=history, final=final,
                       seconds=time.perf_counter() - t0, train_losses=losses)
