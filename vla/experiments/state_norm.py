"""How large the state gets: ‖S_t‖_F against t for linear attention, DeltaNet and VLA (SPEC §6).

The paper claims (Prop. 1) that VLA's state norm is self-limiting under bounded inputs, and that at
T = 1000 it is 109× smaller than linear attention's. This experiment feeds the same random inputs to

* linear attention: ``S_t = Σ φ(k_s) v_sᵀ`` with φ = ELU + 1;
* DeltaNet with β = 1 and unit keys ``k̂ = k / ‖k‖``;
* VLA with the same unit keys, ``u = l2norm(random) / sqrt(d_h)`` (the penalty direction's size in
  the layer) and the op's default hyperparameters (SPEC §1);

and records ``‖S_t‖_F`` on a grid of t, getting each state by running the ops piece by piece with
``initial_state`` / ``output_final_state`` / ``offset`` (the chunk forms ``vla.ops.chunk_vla``,
``chunk_delta_rule``, ``chunk_linear_attn`` when importable, the naive loops otherwise). Every head is an independent trial; the result holds the mean, standard
deviation, minimum and maximum over trials.

Two kinds of random values: ``"iid"`` (v ~ N(0, I): then linear attention's state is a random walk,
E‖S_t‖²_F = t · E‖φ(k)‖² · E‖v‖², so its norm grows like √t) and ``"shared_mean"`` (v = m + N(0, I)
with one fixed random m per head, as values that share a common component: then it grows like t).

The adversarial case of SPEC §6: two unit keys at angle θ, alternating with values +v and −v
(‖v‖ = 1). DeltaNet (β = 1) converges to the least-norm state that stores both, whose norm is
exactly 1 / sin(θ/2) ≈ 2/θ: bounded inputs, yet no bound independent of the keys. VLA is measured
with u a fixed random linear function of the key (as the layer computes it, so two keys give two u)
and with a fresh random u per token.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import naive_recurrent_delta_rule, naive_recurrent_linear_attn, naive_recurrent_vla
from ..ops.utils import l2norm
from ..ops.vla.naive import VLA_DEFAULTS
from . import build_config

NAME = "norm"
REGIMES = ("iid", "shared_mean")
U_MODES = ("random", "from_key")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Config:
    seed: int = 0
    d_heads: Tuple[int, ...] = (32, 64)  # head sizes (d_k = d_v = d_h)
    max_len: int = 8192  # T of the random-input runs
    trials: int = 8  # independent heads per setting
    grid_points: int = 24  # log-spaced t at which ‖S_t‖ is recorded (plus ratio_at and max_len)
    ratio_at: int = 1000  # the paper's T for the 109x claim
    regimes: Tuple[str, ...] = REGIMES  # kinds of random values, see the module docstring
    u_mode: str = "random"  # VLA's u in the random-input runs: "random" or "from_key"
    adv_thetas: Tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, math.pi / 2)
    adv_len: int = 8192  # T of the adversarial runs
    adv_d_head: int = 32
    adv_trials: int = 4  # random rotations of the key pair (and random W_u, v) per angle
    adv_grid_points: int = 16
    dtype: str = "float64"
    backend: str = "auto"  # "auto": the chunk ops when importable, else the naive loops; or "naive" / "chunk"

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"{name} {why}, got {getattr(self, name)!r}")

        self.d_heads = tuple(self.d_heads)
        self.regimes = tuple(self.regimes)
        self.adv_thetas = tuple(float(x) for x in self.adv_thetas)
        for name in ("max_len", "trials", "grid_points", "ratio_at", "adv_len", "adv_d_head",
                     "adv_trials", "adv_grid_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, "must be a positive int")
        if self.adv_d_head < 2:
            bad("adv_d_head", "must be >= 2 (two keys at an angle)")
        if not self.d_heads or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.d_heads):
            bad("d_heads", "must be a non-empty tuple of positive ints")
        if self.ratio_at > self.max_len:
            bad("ratio_at", f"must be <= max_len = {self.max_len}")
        if not self.regimes or any(r not in REGIMES for r in self.regimes):
            bad("regimes", f"must be a non-empty tuple of {REGIMES}")
        if self.u_mode not in U_MODES:
            bad("u_mode", f"must be one of {U_MODES}")
        if not self.adv_thetas or any(not (0 < t <= math.pi) for t in self.adv_thetas):
            bad("adv_thetas", "must be a non-empty tuple of angles in (0, pi]")
        if self.dtype not in DTYPES:
            bad("dtype", f"must be one of {tuple(DTYPES)}")
        if self.backend not in ("auto", "naive", "chunk"):
            bad("backend", "must be 'auto', 'naive' or 'chunk'")


PRESETS = {
    # About 15 s of CPU time (one thread; 20-40 s wall on a busy 2-core machine).
    "quick": {},
    # The paper's T = 1000 point with many trials, a third head size, and an adversarial run long
    # enough for θ = 0.01 to settle (DeltaNet needs about 2/θ² tokens per e-fold).
    "full": dict(d_heads=(32, 64, 128), trials=64, grid_points=40, max_len=16384,
                 adv_thetas=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, math.pi / 2),
                 adv_len=65536, adv_trials=16, adv_grid_points=24, dtype="float32"),
}


def config_for(preset: str, **overrides) -> Config:
    return build_config(Config, PRESETS, preset, overrides)


# ---------------------------------------------------------------------------------------------
# back ends


def ops_for(backend: str = "auto") -> Tuple[Dict[str, Callable], str]:
    """The three ops to use, ``({"linear_attn": f, "deltanet": f, "vla": f}, name)``.

    "auto" takes the chunk forms (``vla.ops.chunk_vla``, ``chunk_delta_rule``, ``chunk_linear_attn``:
    same signatures, same results) when all are importable, the naive loops otherwise.
    """
    naive = {"linear_attn": naive_recurrent_linear_attn, "deltanet": naive_recurrent_delta_rule,
             "vla": naive_recurrent_vla}
    if backend == "naive":
        return naive, "naive"
    try:
        from .. import ops

        chunk = {"linear_attn": ops.chunk_linear_attn, "deltanet": ops.chunk_delta_rule, "vla": ops.chunk_vla}
    except (ImportError, AttributeError):
        if backend == "chunk":
            raise ValueError("backend='chunk' but the chunk ops are not in vla.ops") from None
        return naive, "naive"
    return chunk, "chunk"


def phi(x: torch.Tensor) -> torch.Tensor:
    """Linear attention's feature map, ELU + 1."""
    return F.elu(x) + 1


class _Model:
    """One recurrence advanced piece by piece; ``norms()`` is ‖S‖_F per head of the current state."""

    def __init__(self, kind: str, ops: Dict[str, Callable], u_key: str = "u"):
        if kind not in ("linear_attn", "deltanet", "vla"):
            raise ValueError(f"kind must be 'linear_attn', 'deltanet' or 'vla', got {kind!r}")
        self.kind, self.op, self.u_key = kind, ops[kind], u_key
        self.state = None

    def advance(self, x: Dict[str, torch.Tensor], start: int) -> None:
        q, k, v = x["q"], x["k"], x["v"]
        if self.kind == "linear_attn":
            _, self.state = self.op(phi(q), phi(k), v, initial_state=self.state, output_final_state=True)
        elif self.kind == "deltanet":
            beta = torch.ones(k.shape[:3], dtype=k.dtype, device=k.device)
            _, self.state = self.op(l2norm(q), l2norm(k), v, beta, initial_state=self.state,
                                    output_final_state=True)
        else:
            _, self.state = self.op(q, l2norm(k), v, x[self.u_key], initial_state=self.state,
                                    output_final_state=True, offset=start)

    def norms(self) -> torch.Tensor:
        S = self.state[0]  # [1, H, K, V]
        return S.flatten(2).norm(dim=-1)[0]


def time_grid(T: int, n: int, extra: Sequence[int] = ()) -> List[int]:
    """About ``n`` log-spaced integers in [1, T], plus ``extra`` points and T itself, sorted."""
    pts = set(np.unique(np.round(np.logspace(0, math.log10(T), n)).astype(int)).tolist()) if n > 1 else set()
    pts |= {int(e) for e in extra if 1 <= e <= T}
    pts.add(T)
    return sorted(pts)


def _trace(models: Dict[str, _Model], make_piece: Callable[[int, int], Dict[str, torch.Tensor]],
           grid: Sequence[int], bar) -> Dict[str, np.ndarray]:
    """Run every model over the same pieces; returns name -> norms [len(grid), heads]."""
    out = {name: [] for name in models}
    prev = 0
    for t in grid:
        piece = make_piece(prev, t)
        for name, m in models.items():
            m.advance(piece, prev)
            out[name].append(m.norms().double().cpu().numpy())
        if bar is not None:
            bar.update((t - prev) * len(models))
        prev = t
    return {name: np.stack(v) for name, v in out.items()}


def _stats(norms: np.ndarray) -> Dict[str, list]:
    """Mean, standard deviation (over trials, ddof=1 when possible), min and max per grid point."""
    ddof = 1 if norms.shape[1] > 1 else 0
    return {"mean": norms.mean(1).tolist(), "std": norms.std(1, ddof=ddof).tolist(),
            "min": norms.min(1).tolist(), "max": norms.max(1).tolist()}


def _stream_seed(seed: int, d: int, stream: int) -> int:
    """A seed per (run seed, head size, input stream), the same in every process."""
    return (seed * 1_000_003 + d * 1009 + stream) % (2 ** 63)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log y against log x (None with fewer than two points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


# ---------------------------------------------------------------------------------------------
# random inputs


def _random_setting(cfg: Config, d: int, regime: str, ops, dtype, device, bar) -> dict:
    gen = torch.Generator().manual_seed(_stream_seed(cfg.seed, d, 1 + REGIMES.index(regime)))
    H = cfg.trials

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)

    mean_v = randn(1, 1, H, d) if regime == "shared_mean" else None
    w_u = randn(H, d, d) / math.sqrt(d) if cfg.u_mode == "from_key" else None

    def make_piece(s: int, e: int) -> Dict[str, torch.Tensor]:
        n = e - s
        q, k, v = randn(1, n, H, d), randn(1, n, H, d), randn(1, n, H, d)
        if mean_v is not None:
            v = v + mean_v
        u_raw = torch.einsum("hij,bthj->bthi", w_u, k) if w_u is not None else randn(1, n, H, d)
        return {"q": q, "k": k, "v": v, "u": l2norm(u_raw) / math.sqrt(d)}

    models = {name: _Model(name, ops) for name in ("linear_attn", "deltanet", "vla")}
    grid = time_grid(cfg.max_len, cfg.grid_points, [cfg.ratio_at])
    norms = _trace(models, make_piece, grid, bar)

    i = grid.index(cfg.ratio_at)
    at = {name: {"mean": float(n[i].mean()), "std": float(n[i].std(ddof=1 if H > 1 else 0))}
          for name, n in norms.items()}
    per_trial_la = norms["linear_attn"][i] / norms["vla"][i]
    tail = [j for j, t in enumerate(grid) if t >= cfg.max_len / 10]
    return {
        "regime": regime,
        "d_head": d,
        "t": grid,
        "norms": {name: _stats(n) for name, n in norms.items()},
        "at_ratio_t": {
            "t": cfg.ratio_at,
            "norm": at,
            "ratio_linear_attn_to_vla": at["linear_attn"]["mean"] / at["vla"]["mean"],
            "ratio_linear_attn_to_vla_trials_min": float(per_trial_la.min()),
            "ratio_linear_attn_to_vla_trials_max": float(per_trial_la.max()),
            "ratio_deltanet_to_vla": at["deltanet"]["mean"] / at["vla"]["mean"],
        },
        # growth exponent p in ‖S_t‖ ~ t^p over the last decade of t
        "slope_last_decade": {name: loglog_slope([grid[j] for j in tail], n.mean(1)[tail])
                              for name, n in norms.items()},
        "final": {name: float(n[-1].mean()) for name, n in norms.items()},
    }


# ---------------------------------------------------------------------------------------------
# the adversarial case


def _adversarial(cfg: Config, ops, dtype, device, bar) -> dict:
    d, R, thetas = cfg.adv_d_head, cfg.adv_trials, cfg.adv_thetas
    H = len(thetas) * R  # head h = (angle h // R, trial h % R)
    gen = torch.Generator().manual_seed(_stream_seed(cfg.seed, d, 0))

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    th = torch.tensor(thetas, dtype=torch.float64).repeat_interleave(R)  # [H]
    rot = torch.linalg.qr(randn(H, d, d))[0]  # a random rotation per head
    k1 = rot[:, :, 0]
    k2 = torch.cos(th)[:, None] * rot[:, :, 0] + torch.sin(th)[:, None] * rot[:, :, 1]
    v = l2norm(randn(H, d))
    w_u = randn(H, d, d) / math.sqrt(d)
    u1 = l2norm(torch.einsum("hij,hj->hi", w_u, k1)) / math.sqrt(d)
    u2 = l2norm(torch.einsum("hij,hj->hi", w_u, k2)) / math.sqrt(d)
    dev = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    k1, k2, v, u1, u2 = map(dev, (k1, k2, v, u1, u2))

    def make_piece(s: int, e: int) -> Dict[str, torch.Tensor]:
        even = (torch.arange(s, e, device=device) % 2 == 0)[None, :, None, None]  # token 0 is (k1, +v)
        k = torch.where(even, k1, k2)
        vv = torch.where(even, v, -v)
        u = torch.where(even, u1, u2)
        u_rand = dev(l2norm(randn(1, e - s, H, d)) / math.sqrt(d))
        q = dev(randn(1, e - s, H, d))
        return {"q": q, "k": k, "v": vv, "u": u, "u_random": u_rand}

    models = {name: _Model(name, ops) for name in ("linear_attn", "deltanet", "vla")}
    models["vla_random_u"] = _Model("vla", ops, "u_random")
    grid = time_grid(cfg.adv_len, cfg.adv_grid_points, [cfg.adv_len // 2])
    norms = _trace(models, make_piece, grid, bar)  # [G, H]
    half = grid.index(cfg.adv_len // 2) if cfg.adv_len >= 2 else len(grid) - 1

    out = {}
    for name, n in norms.items():
        n = n.reshape(len(grid), len(thetas), R)  # [G, angle, trial]
        final, mid = n[-1], n[half]
        ddof = 1 if R > 1 else 0
        out[name] = {
            "final_mean": final.mean(1).tolist(),
            "final_std": final.std(1, ddof=ddof).tolist(),
            "final_min": final.min(1).tolist(),
            "final_max": final.max(1).tolist(),
            "mean_trace": n.mean(2).T.tolist(),  # [angle][grid]
            # settled: the mean norm changed by less than 1 % over the second half of the run
            "settled": (np.abs(final.mean(1) - mid.mean(1)) <= 0.01 * final.mean(1)).tolist(),
        }
    th_np = np.asarray(thetas)

    def theta_slope(m: dict) -> Optional[float]:
        # over the angles <= 0.5 whose run settled (an unsettled norm is still below its limit)
        use = (th_np <= 0.5) & np.asarray(m["settled"], bool)
        return loglog_slope(th_np[use], np.asarray(m["final_mean"])[use])

    return {
        "d_head": d,
        "T": cfg.adv_len,
        "thetas": list(thetas),
        "t": grid,
        "models": out,
        "two_over_theta": (2 / th_np).tolist(),
        "deltanet_limit": (1 / np.sin(th_np / 2)).tolist(),  # exact, for ‖v‖ = 1
        # exponent p in ‖S_T‖ ~ θ^p over the settled angles ≤ 0.5 (-1 for the 2/θ law, 0 for a
        # uniform bound); None with fewer than two such angles
        "theta_slope": {name: theta_slope(m) for name, m in out.items()},
    }


# ---------------------------------------------------------------------------------------------


def run(config: Config, device="cpu", progress: bool = True) -> dict:
    """Measure ‖S_t‖_F (random inputs, every head size and value regime) and the adversarial case."""
    from tqdm.auto import tqdm

    if not isinstance(config, Config):
        raise ValueError(f"config must be a state_norm.Config, got {type(config).__name__}")
    ops, backend = ops_for(config.backend)
    dtype = DTYPES[config.dtype]
    device = torch.device(device)
    total = (len(config.d_heads) * len(config.regimes) * config.max_len * 3 + config.adv_len * 4)
    t0 = time.perf_counter()
    # The loops run thousands of tiny ops: on a CPU one thread is fastest, and several threads on a
    # shared, busy machine are many times slower still.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        with tqdm(total=total, desc="norm", unit="tok", unit_scale=True, disable=not progress,
                  leave=False) as bar:
            random_runs = [_random_setting(config, d, regime, ops, dtype, device, bar)
                           for regime in config.regimes for d in config.d_heads]
            adversarial = _adversarial(config, ops, dtype, device, bar)
    finally:
        torch.set_num_threads(threads)
    return {
        "experiment": NAME,
        "config": dataclasses.asdict(config),
        "backend": backend,
        "vla_hyperparameters": dict(VLA_DEFAULTS),
        "device": str(device),
        "models": {
            "linear_attn": "S = sum phi(k) v^T, phi = ELU+1",
            "deltanet": "beta = 1, unit keys",
            "vla": f"unit keys, u = l2norm({'W_u k' if config.u_mode == 'from_key' else 'random'})/sqrt(d_h), "
                   "default hyperparameters",
        },
        "random": random_runs,
        "adversarial": adversarial,
        "elapsed_s": time.perf_counter() - t0,
    }
