"""Proposition 2 of the paper, measured: the Jacobian of VLA's state update along real trajectories.

One token updates the state as ``S_t = (I − α̂ k̂ᵀ) S_{t−1} + α̂ v_tᵀ`` (SPEC §1), so the Jacobian of
``S_{t−1} ↦ S_t`` is ``J ⊗ I_V`` with ``J = I − α̂ k̂ᵀ`` (K×K); its spectral norm and spectral radius
are those of J. The paper claims (Prop. 2) that the unit write direction makes the spectral norm
exactly 1. What the algebra gives (SPEC §6): the eigenvalues of J are 1 (K−1 times) and
``1 − c`` with ``c = α̂·k̂ ∈ (0, 1]``, so the spectral RADIUS is exactly 1, while the spectral NORM is
``sqrt((3 − 2c + sqrt((3 − 2c)² − 4(1 − c)²)) / 2)``, which is 1 only when ``c = 1`` (α̂ = k̂, i.e.
DeltaNet's update) and grows to (1 + √5)/2 ≈ 1.618 as c → 0.

This experiment takes the VLA layers of a small language model, random-init and trained on MQAR
(trained here for the given number of steps, or loaded from ``checkpoint``), runs MQAR sequences
through it, recomputes every token's ``k̂`` and ``α̂`` in float64 from the layer's own q, k, v, u
(checked against the op: the state rebuilt from them reproduces ``naive_recurrent_vla``'s output),
and measures for every (sequence, layer, head, token) the spectral norm (``svdvals``) and spectral
radius (``eigvals``) of J, beside the closed form. A few tokens are also checked with autograd: the
full ``KV × KV`` Jacobian of the op's own step function has the same spectral norm.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from . import build_config

NAME = "jacobian"


@dataclass
class Config:
    seed: int = 0
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    short_conv: int = 4           # as in the MQAR sweep (vla.experiments.mqar): lets the model learn MQAR
    train_n_pairs: int = 8        # MQAR task the trained model learns (VLA learned 8 pairs on CPU in
                                  # ~450 steps of batch 32; 16 pairs not within 1500)
    train_steps: int = 3000
    train_lr: float = 3e-3
    batch_size: int = 64
    checkpoint: Optional[str] = None  # load the trained model from here instead of training it
    eval_n_pairs: int = 16        # MQAR sequences whose trajectories are measured
    num_sequences: int = 16
    autograd_checks: int = 4      # tokens per model whose full Jacobian is taken by autograd
    mode: str = "auto"
    label: str = ""

    def __post_init__(self):
        for name in ("d_model", "n_heads", "n_layers", "d_ff", "train_n_pairs", "train_steps", "batch_size",
                     "eval_n_pairs", "num_sequences"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.autograd_checks < 0:
            raise ValueError(f"autograd_checks must be >= 0, got {self.autograd_checks!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")


PRESETS = {
    "full": {},
    "quick": dict(d_model=64, n_heads=2, d_ff=128, train_n_pairs=4, train_steps=600, batch_size=32,
                  eval_n_pairs=16, num_sequences=8, autograd_checks=2,
                  label="quick preset: a smaller model, trained briefly (see below)"),
}


def config_for(preset: str, **overrides) -> Config:
    return build_config(Config, PRESETS, preset, overrides)


def closed_form_norm(c):
    """Spectral norm of ``I − a bᵀ`` for unit a, b with ``c = a·b`` (SPEC §6)."""
    c = np.asarray(c, dtype=np.float64)
    t = 3 - 2 * c
    return np.sqrt((t + np.sqrt(np.maximum(t * t - 4 * (1 - c) ** 2, 0))) / 2)


def trajectory(mixer, x: torch.Tensor):
    """Every token's unit read key k̂ and unit write direction α̂ for one VLA layer, float64.

    x: the layer's input [B, T, d_model]. Returns (k_hat, alpha_hat, o) with k_hat, alpha_hat
    [B, T, H, K] and o [B, T, H, V], the head outputs rebuilt from them (to check against the op).
    """
    from ..ops.utils import l2norm

    with torch.no_grad():
        q, k, v, u = (t.double() for t in mixer.features(x))
    B, T, H, K = k.shape
    A = torch.eye(K, dtype=torch.float64).expand(B, H, K, K) / mixer.lambda0
    S = torch.zeros(B, H, K, v.shape[-1], dtype=torch.float64)
    scale = mixer.op_kwargs()["scale"]
    k_hats, alphas, outs = [], [], []
    for t in range(T):
        ut = u[:, t]
        z = torch.einsum("bhij,bhj->bhi", A, ut)
        delta = (1 + (ut * z).sum(-1)).clamp_min(mixer.delta_min)
        A = A - z.unsqueeze(-1) * z.unsqueeze(-2) / delta[..., None, None]
        k_hat = l2norm(k[:, t])
        alpha = l2norm(torch.einsum("bhij,bhj->bhi", A, k_hat))
        S = S + alpha.unsqueeze(-1) * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k_hat)).unsqueeze(-2)
        outs.append(scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
        if mixer.nudge_eps > 0 and (t + 1) % mixer.period == 0:
            A = A + mixer.nudge_eps * torch.eye(K, dtype=torch.float64)
        k_hats.append(k_hat)
        alphas.append(alpha)
    return torch.stack(k_hats, 1), torch.stack(alphas, 1), torch.stack(outs, 1)


def _op_output(mixer, x):
    from ..ops import naive_recurrent_vla

    with torch.no_grad():
        q, k, v, u = (t.double() for t in mixer.features(x))
        o, _ = naive_recurrent_vla(q, k, v, u, **mixer.op_kwargs())
    return o


def _autograd_norm(mixer, x, b, t, h):
    """Spectral norm of d vec(S_t) / d vec(S_{t−1}) for one head, by autograd through the op's own
    step function (``vla.ops.vla.naive.vla_step``), at the state the trajectory reaches."""
    from ..ops import naive_recurrent_vla
    from ..ops.vla.naive import vla_step

    with torch.no_grad():
        q, k, v, u = (z.double()[b:b + 1, :, h:h + 1] for z in mixer.features(x))
        kw = mixer.op_kwargs()
        if t > 0:
            _, (S, A) = naive_recurrent_vla(q[:, :t], k[:, :t], v[:, :t], u[:, :t], **kw, output_final_state=True)
        else:
            K = k.shape[-1]
            S = torch.zeros(1, 1, K, v.shape[-1], dtype=torch.float64)
            A = torch.eye(K, dtype=torch.float64).expand(1, 1, K, K) / kw["lambda0"]
    nudge = torch.tensor([False])

    def step(S_in):
        return vla_step(S_in, A, q[:, t], k[:, t], v[:, t], u[:, t], scale=kw["scale"], nudge=nudge,
                        nudge_eps=kw["nudge_eps"], delta_min=kw["delta_min"], eps=1e-6)[1]

    J = torch.autograd.functional.jacobian(step, S)          # [1,1,K,V, 1,1,K,V]
    n = S.numel()
    return float(torch.linalg.svdvals(J.reshape(n, n))[0])


def measure(model, inputs: np.ndarray, autograd_checks: int, rng: np.random.Generator) -> dict:
    """Spectral norms and radii of J over every token of every VLA layer and head of ``model``."""
    from ..layers import VariationalLinearAttention

    captured = []
    hooks = [b.mixer.register_forward_pre_hook(lambda mod, args: captured.append((mod, args[0].detach())))
             for b in model.blocks if isinstance(b.mixer, VariationalLinearAttention)]
    try:
        with torch.no_grad():
            model(torch.as_tensor(inputs, dtype=torch.long))
    finally:
        for hk in hooks:
            hk.remove()
    norms, radii, cs, op_errs, checks = [], [], [], [], []
    for mixer, x in captured:
        k_hat, alpha, o = trajectory(mixer, x)
        ref = _op_output(mixer, x)
        op_errs.append(float((o - ref).norm() / ref.norm()))
        K = k_hat.shape[-1]
        J = torch.eye(K, dtype=torch.float64) - alpha.unsqueeze(-1) * k_hat.unsqueeze(-2)
        norms.append(torch.linalg.svdvals(J)[..., 0].reshape(-1))
        radii.append(torch.linalg.eigvals(J).abs().amax(-1).reshape(-1))
        cs.append((alpha * k_hat).sum(-1).reshape(-1))
        B, T, H, _ = k_hat.shape
        for _ in range(autograd_checks):
            b, t, h = int(rng.integers(B)), int(rng.integers(T)), int(rng.integers(H))
            checks.append({"autograd": _autograd_norm(mixer, x, b, t, h),
                           "from_J": float(torch.linalg.svdvals(J[b, t, h])[0])})
    norms, radii, cs = (torch.cat(z).numpy() for z in (norms, radii, cs))
    closed = closed_form_norm(cs)
    bins = np.linspace(1.0, 1.65, 66)
    return {
        "tokens": int(norms.size),
        "spectral_norm": {"min": float(norms.min()), "median": float(np.median(norms)), "max": float(norms.max()),
                          "mean": float(norms.mean()),
                          "frac_above_1": float((norms > 1 + 1e-9).mean()),
                          "hist": np.histogram(np.clip(norms, bins[0], bins[-1]), bins=bins)[0].tolist(),
                          "bins": bins.tolist()},
        "spectral_radius": {"min": float(radii.min()), "max": float(radii.max()),
                            "max_abs_dev_from_1": float(np.abs(radii - 1).max())},
        "alignment_c": {"min": float(cs.min()), "median": float(np.median(cs)), "max": float(cs.max()),
                        "hist": np.histogram(cs, bins=np.linspace(0, 1, 51))[0].tolist(),
                        "bins": np.linspace(0, 1, 51).tolist()},
        "closed_form_max_abs_err": float(np.abs(closed - norms).max()),
        "trajectory_vs_op_rel_err": max(op_errs),
        "autograd_checks": checks,
        "autograd_max_abs_err": max((abs(c["autograd"] - c["from_J"]) for c in checks), default=None),
    }


def run(config: Config, device: str = "cpu", progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from ..data import MQARTask
    from ..models import LanguageModel, ModelConfig
    from ..train import TrainConfig, evaluate, model_from_checkpoint, train

    t0 = time.time()
    bar = tqdm(total=3, desc="jacobian", disable=not progress, dynamic_ncols=True)
    eval_task = MQARTask(n_pairs=config.eval_n_pairs)
    train_task = MQARTask(n_pairs=config.train_n_pairs)
    max_len = max(eval_task.length, train_task.length)
    mcfg = ModelConfig(d_model=config.d_model, n_heads=config.n_heads, n_layers=config.n_layers,
                       d_ff=config.d_ff, max_len=max_len, mixer="vla", mode=config.mode,
                       short_conv=config.short_conv)
    torch.manual_seed(config.seed)
    random_model = LanguageModel(mcfg)
    inputs, labels = eval_task.test_set(config.num_sequences, config.seed)
    rng = np.random.default_rng(config.seed)
    out = {"config": dataclasses.asdict(config)}
    out["random"] = measure(random_model.double(), inputs, config.autograd_checks, rng)
    bar.update(1)
    if config.checkpoint:
        trained = model_from_checkpoint(config.checkpoint, device=device, mode=config.mode)
        source = f"loaded from {config.checkpoint}"
    else:
        tcfg = TrainConfig(model=mcfg, task=train_task, steps=config.train_steps, batch_size=config.batch_size,
                           lr=config.train_lr, eval_every=0, eval_examples=200, seed=config.seed,
                           device=device, progress=progress)
        trained = train(tcfg).model
        source = f"trained here: {config.train_steps} steps on MQAR with {config.train_n_pairs} pairs"
    bar.update(1)
    trained = trained.cpu()
    t_in, t_lab = train_task.test_set(200, config.seed + 1)
    out["trained_mqar"] = evaluate(trained, t_in, t_lab)
    out["trained_source"] = source
    out["trained"] = measure(trained.double(), inputs, config.autograd_checks, rng)
    bar.update(1)
    bar.close()
    out["meta"] = {"device": device, "elapsed_s": time.time() - t0, "torch": torch.__version__}
    return out
