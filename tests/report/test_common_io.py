"""Report building blocks: atomic writes, JSON conversion, Section, and the norm verdicts."""

import copy
import math
import pathlib

import numpy as np
import pytest

from vla.report import norm as norm_report
from vla.report.common import ClaimRow, Section, fmt, md_table
from vla.report.io import read_json, save_figure, to_jsonable, write_json, write_text


def test_write_json_is_strict_and_atomic(tmp_path):
    p = tmp_path / "sub" / "r.json"
    write_json(p, {"a": (1, 2.5), "nan": float("nan"), "inf": math.inf, "arr": np.arange(3), "p": pathlib.Path("x")})
    assert read_json(p) == {"a": [1, 2.5], "nan": None, "inf": None, "arr": [0, 1, 2], "p": "x"}
    with pytest.raises(TypeError):
        write_json(p, {"bad": object()})
    assert read_json(p)["a"] == [1, 2.5]  # a failed write left the old file whole
    write_text(p.with_suffix(".md"), "hello\n")
    assert p.with_suffix(".md").read_text() == "hello\n"
    assert sorted(x.name for x in p.parent.iterdir()) == ["r.json", "r.md"]  # no temp files left


def test_save_figure_failure_leaves_no_file(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([1, 2], [3, 4])
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "f.notaformat")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.png"]


def test_claim_row_and_section():
    with pytest.raises(ValueError, match="verdict"):
        ClaimRow("c", "p", "o", "mostly")
    s = Section("T", "![a](fig.png) and [b](fig.png) but not (fig.png) or ![c](other.png)\n",
                [pathlib.Path("/x/fig.png")], [])
    assert s.relocated("norm") == "![a](norm/fig.png) and [b](norm/fig.png) but not (fig.png) or ![c](other.png)\n"
    assert md_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |"
    assert [fmt(x) for x in (0, 1234.5, 0.012345, 1.5e-7, None, float("nan"))] == \
        ["0", "1234", "0.0123", "1.50e-07", "n/a", "n/a"]


@pytest.fixture(scope="module")
def tiny_result():
    from vla.experiments import state_norm as sn

    return sn.run(sn.config_for("quick", max_len=200, d_heads=(8,), trials=2, grid_points=5, ratio_at=100,
                                adv_len=64, adv_d_head=4, adv_trials=1, adv_thetas=(0.1, 0.3, 1.0),
                                adv_grid_points=4), progress=False)


def _with_ratios(result, ratios):
    r = copy.deepcopy(result)
    for run, x in zip(r["random"], ratios):
        run["at_ratio_t"]["ratio_linear_attn_to_vla"] = x
    return r


def test_ratio_verdict_follows_the_numbers(tiny_result):
    v = lambda ratios: norm_report._verdict_ratio(_with_ratios(tiny_result, ratios))  # noqa: E731
    assert v([120.0, 200.0]).verdict == "holds"
    assert v([40.0, 800.0]).verdict == "holds partly"
    assert v([40.0, 30.0]).verdict == "holds partly"
    assert v([3.0, 5.0]).verdict == "does not hold"
    assert "120×" in v([120.0, 200.0]).ours


def test_prop1_verdict_follows_the_numbers(tiny_result):
    def v(slope, adv_final):
        r = copy.deepcopy(tiny_result)
        for run in r["random"]:
            run["slope_last_decade"]["vla"] = slope
        th = np.asarray(r["adversarial"]["thetas"])
        r["adversarial"]["models"]["vla"]["final_mean"] = list(adv_final)
        small = th <= 0.5
        r["adversarial"]["theta_slope"]["vla"] = float(np.polyfit(np.log(th[small]), np.log(np.asarray(adv_final)[small]), 1)[0])
        return norm_report._verdict_prop1(r).verdict

    flat = [2.0, 2.0, 2.0]
    one_over = [20.0, 6.7, 2.0]
    assert v(0.01, flat) == "holds"
    assert v(0.01, one_over) == "holds partly"
    assert v(0.3, flat) == "holds partly"
    assert v(0.9, one_over) == "does not hold"


def test_render_norm(tiny_result, tmp_path):
    s = norm_report.render(tiny_result, tmp_path)
    assert [p.name for p in s.figures] == ["state_norm.png", "state_norm_adversarial.png"]
    assert all(p.exists() for p in s.figures)
    assert len(s.claims) == 2 and "109" in s.markdown
