"""Proposition 2 experiment: the closed form, the measurement on a tiny model, the report's verdicts."""

import numpy as np
import pytest
import torch

from vla.experiments import jacobian as J


def test_closed_form_matches_svd():
    rng = np.random.default_rng(0)
    for K in (2, 5, 32):
        a = rng.standard_normal((50, K))
        b = rng.standard_normal((50, K))
        b[:5] = a[:5]                                   # include c = 1 (norm exactly 1)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        M = np.eye(K) - a[:, :, None] * b[:, None, :]
        c = (a * b).sum(1)
        assert np.abs(np.linalg.svd(M, compute_uv=False)[:, 0] - J.closed_form_norm(c)).max() < 1e-12
    assert J.closed_form_norm(0.5) == pytest.approx(1.366, abs=1e-3)
    assert J.closed_form_norm(0.0) == pytest.approx((1 + 5 ** 0.5) / 2, abs=1e-12)
    assert J.closed_form_norm(1.0) == pytest.approx(1.0, abs=1e-12)


def test_run_tiny_and_render(tmp_path):
    cfg = J.config_for("quick", d_model=16, n_heads=2, d_ff=32, train_n_pairs=2, train_steps=3, batch_size=4,
                       eval_n_pairs=3, num_sequences=2, autograd_checks=1)
    result = J.run(cfg, progress=False)
    for key in ("random", "trained"):
        r = result[key]
        assert r["tokens"] == 2 * 2 * 2 * 10               # sequences x layers x heads x tokens
        # float64 eigenvalues / singular values of an 8x8 matrix: rounding ~1e-15
        assert r["spectral_radius"]["max_abs_dev_from_1"] < 1e-10
        assert r["spectral_norm"]["min"] >= 1 - 1e-12
        assert r["closed_form_max_abs_err"] < 1e-10
        assert r["trajectory_vs_op_rel_err"] < 1e-12
        assert r["autograd_max_abs_err"] < 1e-10
        assert 0 < r["alignment_c"]["min"] <= r["alignment_c"]["max"] <= 1 + 1e-12
    from vla.report import jacobian as R

    section = R.render(result, tmp_path)
    assert section.figures[0].exists()
    verdicts = {c.claim.split(":")[0]: c.verdict for c in section.claims}
    assert list(verdicts.values()) == ["does not hold", "holds"]


def test_verdicts_follow_the_numbers():
    from vla.report import jacobian as R

    def fake(frac, max_norm, dev):
        side = {"spectral_norm": {"frac_above_1": frac, "median": max_norm, "max": max_norm},
                "spectral_radius": {"max_abs_dev_from_1": dev}}
        return {"random": side, "trained": side}

    assert [c.verdict for c in R.claims(fake(0.0, 1.0, 1e-15))] == ["holds", "holds"]
    assert [c.verdict for c in R.claims(fake(0.3, 1.2, 1e-3))] == ["does not hold", "does not hold"]


def test_config_checks():
    with pytest.raises(ValueError, match="preset"):
        J.config_for("huge")
    with pytest.raises(ValueError, match="num_sequences"):
        J.config_for("quick", num_sequences=0)
    with pytest.raises(ValueError, match="nonsense"):
        J.config_for("quick", nonsense=1)
