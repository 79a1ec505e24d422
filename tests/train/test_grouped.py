"""Grouped training (vla.train.grouped): G runs trained as one batched model give each run's result
of training it alone, in float64 (weights, evaluation history, losses)."""

import pytest
import torch

from vla.data import MQARTask
from vla.models import LanguageModel, ModelConfig
from vla.train import TrainConfig, train, train_grouped
from vla.train.grouped import GroupedLM


def _cfg(mixer, n_pairs, lr, short_conv=4, readout=None):
    task = MQARTask(layout="paper", n_pairs=n_pairs, vocab_size=32)
    kwargs = {"readout": readout} if readout else {}
    model = ModelConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=task.length,
                        mixer=mixer, short_conv=short_conv, mixer_kwargs=kwargs)
    return TrainConfig(model=model, task=task, steps=5, batch_size=4, lr=lr, eval_every=2, eval_examples=6,
                       seed=3, progress=False)


def _close(a, b, tol):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(float(b.abs().max()), 1.0)


@pytest.mark.parametrize("mixer,short_conv,readout", [("vla", 4, None), ("vla", 0, "paper"), ("deltanet", 4, None),
                                                      ("linear_attn", 4, None), ("softmax", 3, None)])
def test_grouped_training_equals_separate_runs(mixer, short_conv, readout):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfgs = [_cfg(mixer, 2, 3e-3, short_conv, readout), _cfg(mixer, 3, 1e-2, short_conv, readout),
                _cfg(mixer, 3, 3e-3, short_conv, readout)]
        grouped = train_grouped(cfgs, progress=False)
        for g, cfg in enumerate(cfgs):
            alone = train(cfg)
            ref = dict(alone.model.named_parameters())
            for name, p in grouped.models[g].named_parameters():
                assert _close(p, ref[name], 1e-9), (g, name)
            assert [h["step"] for h in grouped.histories[g]] == [h["step"] for h in alone.history]
            for hg, ha in zip(grouped.histories[g], alone.history):
                assert hg["accuracy"] == ha["accuracy"] and hg["exact_match"] == ha["exact_match"]
                assert abs(hg["loss"] - ha["loss"]) <= 1e-6 * max(abs(ha["loss"]), 1.0)
            assert max(abs(a - b) for a, b in zip(grouped.train_losses[g], alone.train_losses)) <= 1e-9
    finally:
        torch.set_default_dtype(old)


def test_grouped_model_checks_its_inputs():
    a = LanguageModel(ModelConfig(vocab_size=32, d_model=16, n_heads=2, d_ff=32, max_len=8))
    b = LanguageModel(ModelConfig(vocab_size=32, d_model=16, n_heads=2, d_ff=32, max_len=8, mixer="softmax"))
    with pytest.raises(ValueError, match="mixer"):
        GroupedLM([a, b])
    g = GroupedLM([a, a])
    with pytest.raises(ValueError, match="ids"):
        g(torch.zeros(3, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        g(torch.zeros(2, 2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="share steps"):
        train_grouped([_cfg("vla", 2, 1e-3), TrainConfig(**{**_cfg("vla", 2, 1e-3).__dict__, "steps": 7})])
