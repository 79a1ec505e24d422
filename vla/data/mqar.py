"""Multi-query associative recall (MQAR) data, in two layouts, seeded and reproducible.

Both layouts use the zoology interchange format: ``inputs`` and ``labels`` are int64 arrays
``[N, T]``; ``labels[i, t]`` is the token the model must predict at position ``t`` (the value of the
key queried there) and -100 (``IGNORE``) everywhere else.

Paper layout (SPEC §6): vocabulary 128, token 127 is the separator. A sequence is
``k1 v1 ... kn vn SEP q1 ... qn`` (T = 3n + 1): n distinct keys drawn from the lower half of the
vocabulary (0 .. 63), values drawn with replacement from the upper half without the separator
(64 .. 126), then every key queried once in random order; the label at query ``q_j`` is its value.
(The paper states the task at this level of detail; the vocabulary split is this project's choice,
so that a key and a value are never the same token.)

Zoology layout (Arora et al. 2023, "Zoology"): keys from ``1 .. vocab/2 - 1``, values from the
upper half; the n pairs come first, the queries are placed in the remaining ``T - 2n`` positions at
gaps drawn from a power law (``p(g) ∝ g^(a-1)``, small gaps likely), each query key followed by its
value, and the other positions hold random tokens (or 0 with ``random_non_queries=False``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Tuple

import numpy as np

IGNORE = -100
LAYOUTS = ("paper", "zoology")


def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def paper_mqar(n_pairs: int, num_examples: int, *, vocab_size: int = 128,
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """MQAR in the paper's layout; returns ``(inputs, labels)``, each int64 ``[N, 3 n_pairs + 1]``."""
    _check_int("n_pairs", n_pairs)
    _check_int("num_examples", num_examples)
    _check_int("vocab_size", vocab_size, 4)
    half = vocab_size // 2
    if n_pairs > half:
        raise ValueError(f"n_pairs must be <= vocab_size // 2 = {half} (distinct keys), got {n_pairs}")
    N, n = num_examples, n_pairs
    sep = vocab_size - 1
    keys = np.argsort(rng.random((N, half)), axis=1)[:, :n]                 # distinct keys 0 .. half-1
    values = rng.integers(half, vocab_size - 1, size=(N, n))                # half .. vocab-2
    order = np.argsort(rng.random((N, n)), axis=1)                          # query order
    rows = np.arange(N)[:, None]
    inputs = np.empty((N, 3 * n + 1), dtype=np.int64)
    inputs[:, 0:2 * n:2] = keys
    inputs[:, 1:2 * n:2] = values
    inputs[:, 2 * n] = sep
    inputs[:, 2 * n + 1:] = keys[rows, order]
    labels = np.full_like(inputs, IGNORE)
    labels[:, 2 * n + 1:] = values[rows, order]
    return inputs, labels


def zoology_mqar(n_pairs: int, num_examples: int, *, seq_len: int = 64, vocab_size: int = 8192,
                 power_a: float = 0.01, random_non_queries: bool = True,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """MQAR in zoology's layout; returns ``(inputs, labels)``, each int64 ``[N, seq_len]``."""
    _check_int("n_pairs", n_pairs)
    _check_int("num_examples", num_examples)
    _check_int("seq_len", seq_len)
    _check_int("vocab_size", vocab_size, 4)
    if not (isinstance(power_a, (int, float)) and 0 < power_a <= 1):
        raise ValueError(f"power_a must be in (0, 1], got {power_a!r}")
    half = vocab_size // 2
    if n_pairs > half - 1:
        raise ValueError(f"n_pairs must be <= vocab_size // 2 - 1 = {half - 1}, got {n_pairs}")
    if 4 * n_pairs > seq_len:
        raise ValueError(f"seq_len must be >= 4 * n_pairs = {4 * n_pairs} (pairs, then room for the queries), got {seq_len}")
    N, n = num_examples, n_pairs
    L = seq_len + 1                                   # one extra token: inputs and labels are shifted views
    rows = np.arange(N)[:, None]
    keys = 1 + np.argsort(rng.random((N, half - 1)), axis=1)[:, :n]
    values = rng.integers(half, vocab_size, size=(N, n))
    seq = np.zeros((N, L), dtype=np.int64)
    seq[:, 0:2 * n:2] = keys
    seq[:, 1:2 * n:2] = values
    # query slots: gaps g = 1 .. G after the pairs, each slot two tokens (key, then its value)
    G = (L - 2 * n) // 2
    gaps = np.arange(1, G + 1)
    logp = np.log(power_a) + (power_a - 1) * np.log(gaps)
    gumbel = -np.log(-np.log(rng.random((N, G))))
    chosen = np.argsort(-(logp + gumbel), axis=1)[:, :n]                    # n distinct gaps, p ∝ g^(a-1)
    pos = 2 * n + 2 * chosen                                                # where each query key goes
    which = np.argsort(rng.random((N, n)), axis=1)                          # which pair each query asks
    filler = rng.integers(1, vocab_size, size=(N, L)) if random_non_queries else np.zeros((N, L), np.int64)
    is_query = np.zeros((N, L), dtype=bool)
    is_query[rows, pos] = True
    is_query[rows, pos + 1] = True
    tail = np.arange(L) >= 2 * n
    seq = np.where(tail & ~is_query, filler, seq)
    seq[rows, pos] = keys[rows, which]
    seq[rows, pos + 1] = values[rows, which]
    inputs = seq[:, :-1].copy()
    labels = np.full((N, seq_len), IGNORE, dtype=np.int64)
    labels[rows, pos] = values[rows, which]                                 # predict the value at the key
    return inputs, labels


@dataclass(frozen=True)
class MQARTask:
    """Which MQAR data to draw. ``seq_len`` and ``power_a`` concern the zoology layout only."""

    layout: str = "paper"
    n_pairs: int = 16
    vocab_size: int = 128
    seq_len: int = 64
    power_a: float = 0.01

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def length(self) -> int:
        return 3 * self.n_pairs + 1 if self.layout == "paper" else self.seq_len

    def sample(self, num_examples: int, rng: np.random.Generator):
        if self.layout == "paper":
            return paper_mqar(self.n_pairs, num_examples, vocab_size=self.vocab_size, rng=rng)
        return zoology_mqar(self.n_pairs, num_examples, seq_len=self.seq_len, vocab_size=self.vocab_size,
                            power_a=self.power_a, rng=rng)

    def train_batch(self, step: int, batch_size: int, seed: int, rank: int = 0):
        """The training batch of ``step``: a function of (seed, step, rank) only, so that a resumed
        or distributed run draws exactly the batches an uninterrupted one does."""
        return self.sample(batch_size, np.random.default_rng([seed, 0, step, rank]))

    def test_set(self, num_examples: int, seed: int):
        """A held-out set, drawn from a stream the training batches never use."""
        return self.sample(num_examples, np.random.default_rng([seed, 1]))

    def to_dict(self) -> dict:
        return asdict(self)


def save_npz(path: str, inputs: np.ndarray, labels: np.ndarray) -> None:
    """Write ``inputs`` and ``labels`` (zoology format) to ``path`` atomically."""
    inputs, labels = check_mqar_arrays(inputs, labels)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, inputs=inputs, labels=labels)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read a zoology-format ``.npz`` (arrays ``inputs`` and ``labels``), checked."""
    with np.load(path) as f:
        missing = [k for k in ("inputs", "labels") if k not in f.files]
        if missing:
            raise ValueError(f"{path} must hold arrays 'inputs' and 'labels'; missing {missing}")
        return check_mqar_arrays(f["inputs"], f["labels"])


def check_mqar_arrays(inputs, labels):
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    for name, x in (("inputs", inputs), ("labels", labels)):
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{name} must be a 2-D integer array [N, T], got {x.dtype} {x.shape}")
    if inputs.shape != labels.shape:
        raise ValueError(f"labels must have inputs' shape {inputs.shape}, got {labels.shape}")
    if inputs.size and inputs.min() < 0:
        raise ValueError("inputs must be token ids >= 0")
    if labels.size and ((labels < 0) & (labels != IGNORE)).any():
        raise ValueError(f"labels must be token ids >= 0 or {IGNORE}")
    return inputs.astype(np.int64), labels.astype(np.int64)
