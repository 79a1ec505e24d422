"""Training G small models as one batched model: the MQAR sweep's runs on one GPU at once.

The models of a sweep (one architecture, each with its own task, learning rate and weights) are
launch-bound on a GPU: a step of one costs about as much as a step of many, if they run as one.
``GroupedLM`` stacks the weights of G copies of ``LanguageModel`` along a leading group dimension:
every projection becomes a batched matrix product, every norm and short convolution applies each
model's own parameters to that model's rows, and the token mixers see one batch of G * B sequences
(their ops treat sequences independently). ``train_grouped`` then follows ``vla.train.train``
step for step: the same initialisation (each model built from its own seed), the same batches,
AdamW with each model's learning rate and schedule, gradient clipping by each model's own norm, the
same evaluations. Each model's result therefore equals training it alone, up to rounding
(tests/train/test_grouped.py checks this in float64).

Tasks of different lengths share one batch: shorter sequences are padded at the end with ignored
labels. A causal model's output at a position depends on earlier positions only, so the padding
changes nothing that the loss or the metrics read; positions beyond a model's ``max_len`` get a zero
position embedding (only padding reaches them).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import IGNORE
from ..layers import ShortConvolution
from ..layers.common import HeadRMSNorm
from ..models import LanguageModel
from .trainer import TrainConfig, loss_dtype, lr_factor


def _stack(tensors: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach() for t in tensors]).clone())


class GroupedLinear(nn.Module):
    """G ``nn.Linear`` of one shape: input [G*B, ..., in] (model g's rows g*B .. g*B+B-1)."""

    def __init__(self, mods: Sequence[nn.Linear]):
        super().__init__()
        self.G = len(mods)
        self.weight = _stack([m.weight for m in mods])                      # [G, out, in]
        self.bias = _stack([m.bias for m in mods]) if mods[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xg = x.reshape(self.G, -1, x.shape[-1])
        w = self.weight.transpose(1, 2)
        y = torch.bmm(xg, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), xg, w)
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def slot(self, g: int) -> dict:
        return {"weight": self.weight[g]} | ({} if self.bias is None else {"bias": self.bias[g]})


class GroupedLayerNorm(nn.Module):
    def __init__(self, mods: Sequence[nn.LayerNorm]):
        super().__init__()
        self.G, self.shape, self.eps = len(mods), tuple(mods[0].normalized_shape), mods[0].eps
        self.weight = _stack([m.weight for m in mods])
        self.bias = _stack([m.bias for m in mods])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, self.shape, None, None, self.eps).reshape(self.G, -1, *self.shape)
        return (y * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)).reshape(x.shape)

    def slot(self, g: int) -> dict:
        return {"weight": self.weight[g], "bias": self.bias[g]}


class GroupedHeadRMSNorm(nn.Module):
    def __init__(self, mods: Sequence[HeadRMSNorm]):
        super().__init__()
        self.G, self.eps = len(mods), mods[0].eps
        self.weight = _stack([m.weight for m in mods])                      # [G, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        D = y.shape[-1]
        y = y.reshape(self.G, -1, D) * self.weight.to(y.dtype).unsqueeze(1)
        return y.reshape(x.shape).to(x.dtype)

    def slot(self, g: int) -> dict:
        return {"weight": self.weight[g]}


class GroupedShortConvolution(nn.Module):
    """G short causal depthwise convolutions, as one depthwise convolution over G * D channels."""

    def __init__(self, mods: Sequence[ShortConvolution]):
        super().__init__()
        self.G, self.kernel_size = len(mods), mods[0].kernel_size
        self.weight = _stack([m.conv.weight for m in mods])                 # [G, D, 1, k]
        self.bias = _stack([m.conv.bias for m in mods])                     # [G, D]

    def forward(self, x: torch.Tensor, state=None, use_cache: bool = False):
        if state is not None or use_cache:
            raise ValueError("a grouped model runs whole sequences; decode with the exported models")
        GB, T, D = x.shape
        G, B, k = self.G, GB // self.G, self.kernel_size
        full = torch.cat([x.new_zeros(GB, k - 1, D), x], dim=1)
        f = full.reshape(G, B, T + k - 1, D).permute(1, 0, 3, 2).reshape(B, G * D, T + k - 1)
        y = F.conv1d(f, self.weight.reshape(G * D, 1, k), self.bias.reshape(G * D), groups=G * D)
        return y.reshape(B, G, D, T).permute(1, 0, 3, 2).reshape(GB, T, D), None

    def slot(self, g: int) -> dict:
        return {"conv.weight": self.weight[g], "conv.bias": self.bias[g]}


_GROUPED = ((ShortConvolution, GroupedShortConvolution), (nn.Linear, GroupedLinear),
            (nn.LayerNorm, GroupedLayerNorm), (HeadRMSNorm, GroupedHeadRMSNorm))


class GroupedLM(nn.Module):
    """``GroupedLM(models)(ids [G, B, T]) -> logits [G, B, T, vocab]``: model g on ids[g].

    The models must share their configuration except ``max_len``. ``export(g)`` returns model g as a
    plain ``LanguageModel`` (for checkpoints, evaluation and decoding).
    """

    def __init__(self, models: Sequence[LanguageModel]):
        super().__init__()
        if not models:
            raise ValueError("models must not be empty")
        base = {k: v for k, v in models[0].cfg.to_dict().items() if k != "max_len"}
        for i, m in enumerate(models):
            other = {k: v for k, v in m.cfg.to_dict().items() if k != "max_len"}
            if other != base:
                raise ValueError(f"models[{i}] differs from models[0] in more than max_len: "
                                 f"{ {k: v for k, v in other.items() if base.get(k) != v} }")
        self.G = len(models)
        self.cfgs = [m.cfg for m in models]
        self.max_len = max(c.max_len for c in self.cfgs)
        self.blocks = copy.deepcopy(models[0].blocks)
        self._slots = {}  # name in blocks -> grouped module
        for name, _ in list(models[0].blocks.named_modules()):
            if not name or any(name.startswith(done + ".") for done in self._slots):
                continue
            mod = models[0].blocks.get_submodule(name)
            for kind, grouped_kind in _GROUPED:
                if isinstance(mod, kind):
                    grouped = grouped_kind([m.blocks.get_submodule(name) for m in models])
                    parent, _, child = name.rpartition(".")
                    setattr(self.blocks.get_submodule(parent) if parent else self.blocks, child, grouped)
                    self._slots[name] = grouped
                    break
        left = [n for n, p in self.blocks.named_parameters()
                if not any(n.startswith(s + ".") for s in self._slots)]
        if left:
            raise ValueError(f"parameters of modules the grouped model cannot stack: {left}")
        d = base["d_model"]
        self.tok_emb = _stack([m.tok_emb.weight for m in models])         # [G, V, d]; the head is tied
        pos = torch.zeros(self.G, self.max_len, d, dtype=models[0].pos_emb.weight.dtype)
        for g, m in enumerate(models):
            pos[g, :m.cfg.max_len] = m.pos_emb.weight.detach()
        self.pos_emb = nn.Parameter(pos)
        self.ln_f = GroupedLayerNorm([m.ln_f for m in models])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 3 or ids.shape[0] != self.G or ids.is_floating_point():
            raise ValueError(f"ids must be an integer tensor [G={self.G}, B, T], got {tuple(ids.shape)}")
        G, B, T = ids.shape
        if T > self.max_len:
            raise ValueError(f"ids reach position {T} > max_len={self.max_len}")
        x = self.tok_emb[torch.arange(G, device=ids.device)[:, None, None], ids]   # [G, B, T, d]
        x = (x + self.pos_emb[:, :T].unsqueeze(1)).reshape(G * B, T, -1)
        for block in self.blocks:
            x, _ = block(x)
        x = self.ln_f(x).reshape(G, B * T, -1)
        return torch.bmm(x, self.tok_emb.transpose(1, 2)).reshape(G, B, T, -1)

    def decays(self, p: nn.Parameter) -> bool:
        """Whether AdamW decays this (stacked) parameter: as ``build_optimizer``, matrices only."""
        return p.dim() - 1 >= 2

    @torch.no_grad()
    def export(self, g: int) -> LanguageModel:
        model = LanguageModel(self.cfgs[g]).to(self.tok_emb.device, self.tok_emb.dtype)
        state = {"tok_emb.weight": self.tok_emb[g], "pos_emb.weight": self.pos_emb[g, :self.cfgs[g].max_len],
                 "ln_f.weight": self.ln_f.weight[g], "ln_f.bias": self.ln_f.bias[g]}
        for name, mod in self._slots.items():
            state.update({f"blocks.{name}.{k}": v for k, v in mod.slot(g).items()})
        state["head.weight"] = state["tok_emb.weight"]
        model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
        return model


class GroupedAdamW:
    """``torch.optim.AdamW`` (non-amsgrad) on stacked parameters, with one learning rate per model.

    Each step is a handful of ``torch._foreach_*`` launches over all parameters (the per-model rates
    enter as broadcast views of one [G] tensor), as torch's own multi-tensor AdamW does.
    """

    def __init__(self, model: GroupedLM, lrs: Sequence[float], betas=(0.9, 0.999), weight_decay: float = 0.0,
                 eps: float = 1e-8):
        self.params = [p for p in model.parameters()]
        self.G = model.G
        self.decay = [p for p in self.params if model.decays(p)] if weight_decay else []
        p0 = self.params[0]
        self.lrs = torch.tensor(list(lrs), dtype=p0.dtype, device=p0.device)
        self.betas, self.eps, self.wd, self.t = tuple(betas), eps, weight_decay, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _views(self, per_model: torch.Tensor, like) -> list:
        return [per_model.view(-1, *([1] * (p.dim() - 1))) for p in like]

    @torch.no_grad()
    def step(self, factor: float):
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        params = [p for p in self.params if p.grad is not None]
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        grads = [p.grad for p in params]
        m, v = [self.m[i] for i in idx], [self.v[i] for i in idx]
        if self.decay:
            decay = [p for p in self.decay if p.grad is not None]
            torch._foreach_mul_(decay, self._views(1 - self.lrs * (factor * self.wd), decay))
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, 1 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(m, denom)
        torch._foreach_mul_(update, self._views(self.lrs * (-factor / bc1), params))
        torch._foreach_add_(params, update)


def clip_grad_norm_grouped(params, max_norm: float, G: int) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` per model: each model's gradient scaled by its own norm."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.cat([g.reshape(G, -1) for g in grads], dim=1).norm(dim=1)   # [G]
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [coef.to(g.dtype).view(-1, *([1] * (g.dim() - 1))) for g in grads])
    return total


def _padded(arrays: Sequence[np.ndarray], T: int, fill: int) -> np.ndarray:
    out = np.full((len(arrays), arrays[0].shape[0], T), fill, dtype=np.int64)
    for g, a in enumerate(arrays):
        out[g, :, :a.shape[1]] = a
    return out


@torch.no_grad()
def evaluate_grouped(model: GroupedLM, sets, *, batch_size: int = 256, device="cpu") -> List[dict]:
    """``vla.train.evaluate`` for every model at once: ``sets`` holds one (inputs, labels) per model,
    all of the same number of examples."""
    was_training = model.training
    model.eval()
    n = sets[0][0].shape[0]
    if any(s[0].shape[0] != n for s in sets):
        raise ValueError("every model's evaluation set must hold the same number of examples")
    T = max(s[0].shape[1] for s in sets)
    inputs = torch.from_numpy(_padded([np.asarray(s[0]) for s in sets], T, 0))
    labels = torch.from_numpy(_padded([np.asarray(s[1]) for s in sets], T, IGNORE))
    G = model.G
    correct = torch.zeros(G, dtype=torch.long)
    answers = torch.zeros(G, dtype=torch.long)
    exact = torch.zeros(G, dtype=torch.long)
    loss_sum = torch.zeros(G, dtype=torch.float64)
    for s in range(0, n, batch_size):
        x = inputs[:, s:s + batch_size].to(device)
        y = labels[:, s:s + batch_size].to(device)
        logits = model(x)
        mask = y != IGNORE
        hit = (logits.argmax(-1) == y) & mask
        correct += hit.sum((1, 2)).cpu()
        answers += mask.sum((1, 2)).cpu()
        exact += (hit.sum(2) == mask.sum(2)).sum(1).cpu()
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
                             reduction="none").reshape(G, -1)
        loss_sum += ce.sum(1).double().cpu()
    model.train(was_training)
    return [{"accuracy": int(correct[g]) / max(int(answers[g]), 1), "exact_match": int(exact[g]) / max(n, 1),
             "loss": float(loss_sum[g]) / max(int(answers[g]), 1), "answers": int(answers[g]), "sequences": n}
            for g in range(G)]


@dataclass
class GroupedResult:
    models: List[LanguageModel]
    step: int
    histories: List[List[dict]]
    finals: List[Optional[dict]]
    seconds: float
    train_losses: List[List[float]] = field(default_factory=list)


_SHARED = ("steps", "batch_size", "weight_decay", "betas", "warmup_frac", "grad_clip", "eval_every",
           "eval_examples", "seed", "device")


def train_grouped(cfgs: Sequence[TrainConfig], progress: bool = True) -> GroupedResult:
    """Train the runs ``cfgs`` (the same settings but for model.max_len, task and lr) as one grouped
    model; each model's result equals ``vla.train.train(cfg)`` up to rounding. No checkpoints."""
    from tqdm.auto import tqdm

    if not cfgs:
        raise ValueError("cfgs must not be empty")
    for name in _SHARED:
        values = {repr(getattr(c, name)) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"the grouped runs must share {name}, got {sorted(values)}")
    c0 = cfgs[0]
    t0 = time.perf_counter()
    device = torch.device(c0.device)
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)  # as train(): each model from its own seed
        models.append(LanguageModel(c.model))
    model = GroupedLM(models).to(device)
    del models
    G = model.G
    opt = GroupedAdamW(model, [c.lr for c in cfgs], betas=c0.betas, weight_decay=c0.weight_decay)
    val_sets = [c.task.test_set(c.eval_examples, c.seed) for c in cfgs]
    T = max(c.task.length for c in cfgs)
    histories: List[List[dict]] = [[] for _ in range(G)]
    losses: List[torch.Tensor] = []
    bar = tqdm(total=c0.steps, disable=not progress, desc=f"{c0.model.mixer} x{G}", leave=False, dynamic_ncols=True)
    model.train()
    for step in range(c0.steps):
        batches = [c.task.train_batch(step, c0.batch_size, c0.seed, 0) for c in cfgs]
        x = torch.from_numpy(_padded([b[0] for b in batches], T, 0)).to(device)
        y = torch.from_numpy(_padded([b[1] for b in batches], T, IGNORE)).to(device)
        logits = model(x)
        ce = F.cross_entropy(loss_dtype(logits).reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
                             reduction="none").reshape(G, -1)
        per_model = ce.sum(1) / (y.reshape(G, -1) != IGNORE).sum(1)
        opt.zero_grad()
        per_model.sum().backward()
        clip_grad_norm_grouped(opt.params, c0.grad_clip, G)
        opt.step(lr_factor(step, c0.steps, c0.warmup_frac))
        losses.append(per_model.detach())
        bar.update(1)
        done = step + 1
        if c0.eval_every and done % c0.eval_every == 0 and done < c0.steps:
            for g, r in enumerate(evaluate_grouped(model, val_sets, device=device)):
                histories[g].append({"step": done, **r})
    bar.close()
    finals = [{"step": c0.steps, **r} for r in evaluate_grouped(model, val_sets, device=device)]
    for g in range(G):
        if not histories[g] or histories[g][-1]["step"] != c0.steps:
            histories[g].append(finals[g])
    loss_rows = torch.stack(losses).cpu().T.tolist() if losses else [[] for _ in range(G)]
    return GroupedResult(models=[model.export(g) for g in range(G)], step=c0.steps, histories=histories,
                         finals=finals, seconds=time.perf_counter() - t0, train_losses=loss_rows)
