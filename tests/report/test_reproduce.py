"""``vla reproduce``: files written, ``all`` with missing / failing / render-only entries, the CLI."""

import json
import pathlib
import re
import sys
import types

import pytest

import vla.experiments as experiments
from vla.cli import main, parse_overrides
from vla.report.common import VERDICTS
from vla.report.reproduce import reproduce

TINY = dict(max_len=200, d_heads=[8], trials=3, grid_points=6, ratio_at=100, adv_len=64, adv_d_head=4,
            adv_trials=2, adv_thetas=[0.3, 1.0], adv_grid_points=4)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _claim_rows(md: str):
    """Rows of the first claims table in a markdown text: [(claim, paper, ours, verdict)]."""
    lines = md.splitlines()
    start = lines.index("| claim | paper | ours | verdict |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _image_links(md: str):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_reproduce_norm_writes_results_figures_and_report(tmp_path):
    outcomes = reproduce("norm", "quick", tmp_path, "cpu", 0, overrides={"norm": TINY}, progress=False)
    assert [o.status for o in outcomes] == ["done"]
    d = tmp_path / "norm"
    saved = json.loads((d / "results.json").read_text())
    assert saved["meta"]["preset"] == "quick" and saved["meta"]["seed"] == 0
    assert saved["result"]["config"]["max_len"] == 200
    pngs = sorted(d.glob("*.png"))
    assert len(pngs) == 2
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000
    report = (d / "report.md").read_text()
    assert "quick: CPU-sized, smaller than the paper's runs" in report
    rows = _claim_rows(report)
    assert len(rows) == 2 and all(r[3].strip("*") in VERDICTS for r in rows)
    assert "109" in rows[1][1]
    for link in _image_links(report):
        assert (d / link).exists(), link
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind


def _fake_module(name, monkeypatch, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def test_reproduce_all_with_missing_failing_and_render_only_entries(tmp_path, monkeypatch, capsys):
    from vla.report.common import ClaimRow, Section

    def failing_run(config, device="cpu", progress=True):
        raise RuntimeError("boom")

    _fake_module("tests_fake_failing", monkeypatch, config_for=lambda preset, **kw: None, run=failing_run)

    def render_bench(result, out_dir):
        return Section("Bench", f"speed-up {result['speedup']}×\n", [],
                       [ClaimRow("kernel is fast", "14×", f"{result['speedup']}×", "holds partly")])

    _fake_module("vla.report.fakebench", monkeypatch, load=lambda: {"speedup": 7}, render=render_bench)
    registry = {"norm": "vla.experiments.state_norm", "ghost": "vla.experiments.does_not_exist_yet",
                "broken": "tests_fake_failing", "fakebench": experiments.RENDER_ONLY}
    monkeypatch.setattr(experiments, "REGISTRY", registry)

    outcomes = reproduce("all", "quick", tmp_path, "cpu", 0, overrides={"norm": TINY}, progress=False)
    assert [(o.name, o.status) for o in outcomes] == [("norm", "done"), ("ghost", "missing"),
                                                       ("broken", "failed"), ("fakebench", "done")]
    assert "boom" in capsys.readouterr().err  # the failure's traceback is shown
    report = (tmp_path / "REPORT.md").read_text()
    assert "quick: CPU-sized, smaller than the paper's runs" in report
    rows = _claim_rows(report)
    assert [r[0] for r in rows][-1] == "kernel is fast" and len(rows) == 3
    assert "`ghost`: not measured" in report and "`broken`: failed: RuntimeError: boom" in report
    assert "## 1. State norm" in report and "## 2. Bench" in report
    links = _image_links(report)
    assert links and all(l.startswith("norm/") and (tmp_path / l).exists() for l in links)
    assert json.loads((tmp_path / "fakebench" / "results.json").read_text())["result"] == {"speedup": 7}
    assert (tmp_path / "fakebench" / "report.md").exists()


def test_interrupted_all_keeps_finished_results(tmp_path, monkeypatch):
    def interrupted(config, device="cpu", progress=True):
        raise KeyboardInterrupt

    _fake_module("tests_fake_interrupted", monkeypatch, config_for=lambda preset, **kw: None, run=interrupted)
    monkeypatch.setattr(experiments, "REGISTRY", {"norm": "vla.experiments.state_norm",
                                                  "later": "tests_fake_interrupted"})
    with pytest.raises(KeyboardInterrupt):
        reproduce("all", "quick", tmp_path, "cpu", 0, overrides={"norm": TINY}, progress=False)
    assert json.loads((tmp_path / "norm" / "results.json").read_text())["result"]["experiment"] == "norm"
    report = (tmp_path / "REPORT.md").read_text()
    assert "`later`: not run yet" in report and "## 1. State norm" in report


def test_reuse_renders_without_running(tmp_path, monkeypatch):
    reproduce("norm", "quick", tmp_path, "cpu", 0, overrides={"norm": TINY}, progress=False)
    (tmp_path / "norm" / "report.md").unlink()
    import vla.experiments.state_norm as sn

    monkeypatch.setattr(sn, "run", lambda *a, **k: pytest.fail("--reuse must not run the experiment"))
    reproduce("norm", "quick", tmp_path, "cpu", 0, progress=False, reuse=True)
    assert (tmp_path / "norm" / "report.md").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="name"):
        reproduce("nonsense", "quick", tmp_path, "cpu", 0)
    with pytest.raises(ValueError, match="preset"):
        reproduce("norm", "huge", tmp_path, "cpu", 0)
    with pytest.raises(ValueError, match="bogus_field"):
        reproduce("norm", "quick", tmp_path, "cpu", 0, overrides={"norm": {"bogus_field": 1}}, progress=False)
    with pytest.raises(ValueError, match="overrides"):
        reproduce("norm", "quick", tmp_path, "cpu", 0, overrides={"nope": {}})


def test_cli_entry_point(tmp_path, capsys):
    args = ["reproduce", "norm", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    for k, v in TINY.items():
        args += ["--set", f"norm.{k}={json.dumps(v)}"]
    assert main(args) == 0
    assert "paper: 109×" in capsys.readouterr().out  # the headline numbers are printed
    assert (tmp_path / "norm" / "results.json").exists() and (tmp_path / "norm" / "report.md").exists()
    assert json.loads((tmp_path / "norm" / "results.json").read_text())["result"]["config"]["d_heads"] == [8]


def test_parse_overrides():
    assert parse_overrides(["norm.max_len=64", "norm.d_heads=[8, 16]", "dtype=float32"], "norm") == \
        {"norm": {"max_len": 64, "d_heads": [8, 16], "dtype": "float32"}}
    with pytest.raises(SystemExit):
        parse_overrides(["max_len=64"], "all")
    with pytest.raises(SystemExit):
        parse_overrides(["max_len"], "norm")
