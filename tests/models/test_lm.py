"""The small language model: shapes, tied head, causality, decoding with a cache (float64)."""

import pytest
import torch

from tests.helpers import rel_err
from vla.layers import MIXERS
from vla.models import LanguageModel, ModelConfig


def small(mixer, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=20, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=32, mixer=mixer, **kw)
    return LanguageModel(cfg).double()


@pytest.mark.parametrize("mixer,conv", [(m, 0) for m in sorted(MIXERS)] + [("vla", 4), ("softmax", 3)])
def test_decode_equals_forward_and_is_causal(mixer, conv):
    model = small(mixer, short_conv=conv)
    ids = torch.randint(0, 20, (2, 11))
    full, cache = model(ids)
    assert full.shape == (2, 11, 20) and cache is None
    logits, cache = model(ids[:, :4], use_cache=True)
    outs = [logits]
    for t in range(4, 11):
        logits, cache = model(ids[:, t:t + 1], cache=cache, use_cache=True)
        outs.append(logits)
    # same arithmetic regrouped, float64: agreement to ~1e-15; see tests/layers for the tolerance
    assert rel_err(torch.cat(outs, 1), full) < 1e-10
    ids2 = ids.clone()
    ids2[:, 7:] = (ids2[:, 7:] + 1) % 20
    assert torch.allclose(model(ids2)[0][:, :7], full[:, :7], rtol=0, atol=1e-12)


def test_tied_head_and_config_checks():
    model = small("vla", mixer_kwargs={"readout": "paper"})
    assert model.head.weight is model.tok_emb.weight
    with pytest.raises(ValueError, match="mixer"):
        ModelConfig(mixer="mamba")
    with pytest.raises(ValueError, match="short_conv"):
        ModelConfig(short_conv=-1)
    with pytest.raises(ValueError, match="d_model"):
        ModelConfig(d_model=0)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(1, 3))


def test_short_convolution_is_causal_depthwise_conv():
    from vla.layers import ShortConvolution

    conv = ShortConvolution(3, 4).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    y, _ = conv(x)
    w, b = conv.conv.weight[:, 0], conv.conv.bias          # [D, K]: tap K-1 multiplies x_t
    ref = torch.stack([sum(w[:, 3 - j] * (x[:, t - j] if t - j >= 0 else 0) for j in range(4)) + b
                       for t in range(9)], dim=1)
    assert rel_err(y, ref) < 1e-12
