"""The trainer under DDP (2 gloo CPU processes) against one process with the same global batch.

Same global batch, same initial weights, gradients averaged by DDP after each rank's loss was
reweighted to the global mean: the two runs compute the same function, differing only in the order
in which float32 sums over the batch are taken. TOL_* below are derived from that.
"""

import os

import numpy as np
import torch

from tests.distributed.launch import run_ranks
from vla.data import IGNORE, MQARTask
from vla.distributed.ddp import DataParallel
from vla.models import ModelConfig
from vla.train import TrainConfig, load_checkpoint, train

STEPS = 4
# float32 unit roundoff 6e-8; a loss is a mean of ~10^2 terms, summed in a different order: relative
# differences of ~1e-7 per step, carried through 4 AdamW steps whose update lr * m / sqrt(v) changes by
# at most lr * (relative gradient change) per step. Losses: 1e-5 relative; weights: 1e-5 absolute
# (>= 4 steps * lr 3e-3 * 1e-4, a 100x margin on the 1e-7 relative changes). A wrong batch slice, a
# missing gradient average or an unweighted loss moves the loss by >1e-3 and the weights by ~lr.
TOL_LOSS = 1e-5
TOL_WEIGHT = 1e-5


def _config(**kw):
    base = dict(model=ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=16),
                task=MQARTask(n_pairs=3, vocab_size=32), steps=STEPS, batch_size=6, lr=3e-3,
                eval_every=2, eval_examples=16, progress=False)
    base.update(kw)
    return TrainConfig(**base)


class _UnevenTask:
    """Sequences with 1, 2, 3, ... answers: ranks hold different numbers of answer positions."""

    def train_batch(self, step, batch_size, seed, rank):
        rng = np.random.default_rng([seed, step, rank])
        y = rng.integers(0, 100, size=(batch_size, 8))
        for i in range(batch_size):
            y[i, i + 1:] = IGNORE
        return y.copy(), y


def _check_loss_weights(rank, world):
    """Each rank's mean, reweighted and averaged as DDP averages gradients, is the global batch's mean."""
    dp = DataParallel("cpu")
    x, y, weight = dp.batch(_UnevenTask(), 3, 6, 0)
    assert x.shape[0] == 3
    local_mean = torch.tensor(y[y != IGNORE], dtype=torch.float64).mean()
    _, y_all = _UnevenTask().train_batch(3, 6, 0, 0)
    want = float(torch.tensor(y_all[y_all != IGNORE], dtype=torch.float64).mean())
    assert abs(dp.global_value(local_mean * weight) - want) <= 1e-12 * abs(want)
    assert weight != 1.0  # the ranks hold 1+2+3 and 4+5+6 answers


def _body(rank, world, out, out_single, ref_state, ref_losses, ref_final):
    _check_loss_weights(rank, world)
    saves = []
    real_save = torch.save

    def recording_save(obj, f, *a, **k):
        saves.append(str(f))
        return real_save(obj, f, *a, **k)

    torch.save = recording_save
    try:
        first = train(_config(out=out, stop_after=STEPS // 2))
        assert first.step == STEPS // 2
        # only rank 0 wrote; the folder holds the checkpoint alone (atomic write, no temp file left)
        assert (len(saves) > 0) == (rank == 0), (rank, saves)
        assert os.listdir(out) == ["checkpoint.pt"]
        assert load_checkpoint(os.path.join(out, "checkpoint.pt"))["step"] == STEPS // 2
        resumed = train(_config(out=out))
        # a checkpoint written by one process resumes on two (the global batch does not depend on them)
        resumed_single = train(_config(out=out_single))
    finally:
        torch.save = real_save
    for name, p in resumed_single.model.state_dict().items():
        assert (p - ref_state[name]).abs().max() <= TOL_WEIGHT, (rank, name)
    assert resumed.step == STEPS
    assert len(resumed.train_losses) == STEPS
    for mine, ref in zip(resumed.train_losses, ref_losses):
        assert abs(mine - ref) <= TOL_LOSS * abs(ref), (rank, resumed.train_losses, ref_losses)
    for name, p in resumed.model.state_dict().items():
        assert (p - ref_state[name]).abs().max() <= TOL_WEIGHT, (rank, name)
    assert abs(resumed.final["loss"] - ref_final["loss"]) <= TOL_LOSS * abs(ref_final["loss"])
    assert resumed.final["answers"] == ref_final["answers"]


def test_ddp_matches_one_process(tmp_path):
    ref = train(_config())
    ref_state = {k: v.clone() for k, v in ref.model.state_dict().items()}
    train(_config(out=str(tmp_path / "single"), stop_after=STEPS // 2))
    run_ranks(_body, 2, str(tmp_path / "ddp"), str(tmp_path / "single"), ref_state, ref.train_losses, ref.final)
