"""MQAR sweep: job order, budget skipping, learning-rate picking, the report's verdicts, the CLI."""

import json

import numpy as np
import pytest

from vla.experiments import mqar as M
from vla.report import mqar as R


def tiny(**kw):
    base = dict(n_pairs=(2,), mixers=("softmax", "vla"), lrs=(3e-3, 1e-2), d_model=16, n_heads=2, d_ff=32,
                steps=3, batch_size=4, val_examples=8, test_examples=8)
    base.update(kw)
    return M.config_for("quick", **base)


def test_job_order_and_ablation_runs():
    cfg = M.config_for("full")
    jobs = M.jobs_of(cfg)
    main = [j for j in jobs if j["short_conv"] == cfg.short_conv]
    assert len(main) == 7 * 4 * 3 and len(jobs) == len(main) + 2 * 4
    assert [j["lr"] for j in main[:28]] == [1e-3] * 28          # one learning-rate round at a time
    assert main[0]["n_pairs"] == 64                              # longest runs first in a round
    assert all(j["short_conv"] == 0 for j in jobs[len(main):])   # the ablation comes last


def test_run_tiny_sweep_and_budget(tmp_path):
    result = M.run(tiny(), progress=False)
    assert [r["status"] for r in result["runs"]] == ["done"] * 4
    for r in result["runs"]:
        assert 0 <= r["test"]["accuracy"] <= 1 and r["test"]["answers"] == 8 * 2
    assert {(e["mixer"], e["n_pairs"]) for e in result["best"]} == {("softmax", 2), ("vla", 2)}
    json.dumps(result)                                           # plain data
    section = R.render(result, tmp_path)
    assert section.figures[0].exists() and "| VLA |" in section.markdown
    # a budget that the first finished run exhausts: the later runs are listed as skipped
    skipped = M.run(tiny(mixers=("softmax",), time_budget_s=1e-9), progress=False,
                    first_guess={"softmax": 1.0})
    assert [r["status"] for r in skipped["runs"]] == ["skipped", "skipped"]
    assert skipped["best"][0].get("accuracy") is None


def test_grouped_sweep_equals_the_sequential_one():
    # float64, so that the two ways of computing agree to rounding: same runs, same scores, same picks
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfg = dict(n_pairs=(2, 3), no_conv_n_pairs=(2,), short_conv=4)
        seq = M.run(tiny(**cfg), progress=False)
        grp = M.run(tiny(grouped=True, **cfg), progress=False)
    finally:
        torch.set_default_dtype(old)
    key = lambda r: (r["mixer"], r["n_pairs"], r["lr"], r["short_conv"])  # noqa: E731
    assert sorted(map(key, seq["runs"])) == sorted(map(key, grp["runs"])) and len(grp["runs"]) == 2 * 2 * 2 + 2
    by_key = {key(r): r for r in seq["runs"]}
    for r in grp["runs"]:
        s = by_key[key(r)]
        for split in ("val", "test"):
            assert r[split]["accuracy"] == s[split]["accuracy"] and r[split]["exact_match"] == s[split]["exact_match"]
            assert abs(r[split]["loss"] - s[split]["loss"]) <= 1e-6 * max(s[split]["loss"], 1.0)
        assert abs(r["final_train_loss"] - s["final_train_loss"]) <= 1e-9 * max(s["final_train_loss"], 1.0)
        assert r["group_size"] == (4 if r["short_conv"] else 1)
    assert grp["best"] == seq["best"]


def _run(mixer, n, lr, val, test, exact=0.0, conv=4):
    return {"mixer": mixer, "n_pairs": n, "lr": lr, "short_conv": conv, "status": "done",
            "val": {"accuracy": val, "exact_match": exact, "loss": 1.0},
            "test": {"accuracy": test, "exact_match": exact}}


def test_pick_best_uses_validation_not_test():
    runs = [_run("vla", 8, 1e-3, val=0.9, test=0.5), _run("vla", 8, 3e-3, val=0.8, test=0.99),
            _run("vla", 8, 1e-2, val=0.99, test=0.1, conv=0)]       # ablation runs are not candidates
    (best,) = M.pick_best(runs, main_conv=4)
    assert best["lr"] == 1e-3 and best["accuracy"] == 0.5
    assert not best["lr_at_edge"]                                  # two rates tried: no edge to speak of
    (best,) = M.pick_best(runs + [_run("vla", 8, 3e-4, val=0.1, test=0.1)], main_conv=4)
    assert best["lr"] == 1e-3 and not best["lr_at_edge"]
    (best,) = M.pick_best(runs + [_run("vla", 8, 1e-2, val=0.1, test=0.1)], main_conv=4)
    assert best["lr"] == 1e-3 and best["lr_at_edge"]


def _result(acc):
    """acc: {mixer: {n_pairs: test accuracy}} -> a result with those numbers (d_h = 32)."""
    best = [{"mixer": m, "n_pairs": n, "lr": 1e-3, "val_accuracy": a, "accuracy": a, "exact_match": a}
            for m, d in acc.items() for n, a in d.items()]
    return {"head_dim": 32, "best": best, "runs": []}


@pytest.mark.parametrize("vla,delta,lin,expected", [
    ({8: 0.99, 16: 0.97, 32: 0.65}, {8: 0.6, 16: 0.4, 32: 0.2}, {8: 0.3, 16: 0.2, 32: 0.1},
     ["holds", "holds", "holds"]),
    ({8: 0.9, 16: 0.85, 32: 0.95}, {8: 0.9, 16: 0.8, 32: 0.9}, {8: 0.3, 16: 0.2, 32: 0.1},
     ["holds partly", "holds partly", "holds partly"]),
    ({8: 0.5, 16: 0.3, 32: 0.2}, {8: 0.6, 16: 0.4, 32: 0.3}, {8: 0.5, 16: 0.3, 32: 0.2},
     ["does not hold", "does not hold", "does not hold"]),
])
def test_verdicts_follow_the_numbers(vla, delta, lin, expected):
    rows = R.claims(_result({"vla": vla, "deltanet": delta, "linear_attn": lin}))
    assert [r.verdict for r in rows] == expected


def test_no_verdict_for_runs_shorter_than_the_papers():
    result = _result({"vla": {8: 0.1, 32: 0.1}, "deltanet": {8: 0.9, 32: 0.9}, "linear_attn": {8: 0.9, 32: 0.9}})
    result["config"] = {"steps": 300, "batch_size": 32}
    rows = R.claims(result)
    assert [r.verdict for r in rows] == ["not measured"] * 3 and "no verdict" in rows[0].ours
    result["config"] = {"steps": 3000, "batch_size": 64}
    assert [r.verdict for r in R.claims(result)] == ["does not hold"] * 3


def test_not_measured_without_the_runs():
    rows = R.claims(_result({"vla": {64: 0.1}}))
    assert [r.verdict for r in rows] == ["not measured"] * 3


def test_cli_train_data_eval(tmp_path, capsys):
    from vla.cli import main

    out = tmp_path / "run"
    assert main(["mqar", "train", "--mixer", "vla", "--n-pairs", "2", "--steps", "3", "--batch", "4",
                 "--d-model", "16", "--heads", "2", "--d-ff", "32", "--eval-examples", "8", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert (out / "checkpoint.pt").exists() and (out / "metrics.json").exists()
    data = tmp_path / "d.npz"
    assert main(["mqar", "data", "--layout", "paper", "--n-pairs", "2", "--num", "6", "--out", str(data)]) == 0
    capsys.readouterr()
    assert main(["mqar", "eval", "--checkpoint", str(out / "checkpoint.pt"), "--data", str(data),
                 "--device", "cpu", "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["answers"] == 12 and scores["sequences"] == 6
    assert json.loads((tmp_path / "s.json").read_text())["accuracy"] == scores["accuracy"]
    # a file the model cannot read (tokens beyond its vocabulary) is refused with a clear error
    big = tmp_path / "z.npz"
    main(["mqar", "data", "--layout", "zoology", "--n-pairs", "2", "--seq-len", "8", "--num", "2", "--out", str(big)])
    with pytest.raises(ValueError, match="vocabulary"):
        main(["mqar", "eval", "--checkpoint", str(out / "checkpoint.pt"), "--data", str(big), "--device", "cpu"])


def test_config_checks():
    with pytest.raises(ValueError, match="mixers"):
        M.config_for("quick", mixers=("mamba",))
    with pytest.raises(ValueError, match="n_pairs"):
        M.config_for("quick", n_pairs=(65,))
    with pytest.raises(ValueError, match="preset"):
        M.config_for("medium")


def test_merge_pools_runs_and_refuses_other_settings():
    from vla.experiments.mqar import Config
    import dataclasses

    cfg = dataclasses.asdict(Config(n_pairs=(8,), mixers=("vla",), lrs=(3e-3,), no_conv_n_pairs=()))
    a = {"config": cfg, "head_dim": 32, "runs": [_run("vla", 8, 3e-3, val=0.2, test=0.21)]}
    b = {"config": {**cfg, "lrs": [1e-3]}, "head_dim": 32, "runs": [_run("vla", 8, 1e-3, val=0.7, test=0.69)]}
    merged = R.merge([a, b], ["a.json", "b.json"])
    (best,) = merged["best"]
    assert best["lr"] == 1e-3 and best["accuracy"] == 0.69 and best["lrs_tried"] == [1e-3, 3e-3]
    assert merged["missing"] == [] and {r["source"] for r in merged["runs"]} == {"a.json", "b.json"}
    with pytest.raises(ValueError, match="steps"):
        R.merge([a, {**b, "config": {**b["config"], "steps": 10}}], ["a.json", "b.json"])


def _sweep_file(path, mixers, runs, grouped=True):
    """A committed-sweep JSON with one n_pairs (8) and one rate (1e-3), the given runs."""
    from vla.experiments.mqar import Config
    import dataclasses

    cfg = dataclasses.asdict(Config(n_pairs=(8,), mixers=tuple(mixers), lrs=(1e-3,), no_conv_n_pairs=(), grouped=grouped))
    path.write_text(json.dumps({"config": cfg, "head_dim": 32, "runs": runs, "meta": {"elapsed_s": 1.0}}))


def _skipped(mixer):
    return {"mixer": mixer, "n_pairs": 8, "lr": 1e-3, "short_conv": 4, "status": "skipped", "why": "budget"}


def test_latest_sweep_is_the_newest_series_of_calls(tmp_path):
    # an older series (mqar_full_h200.json) stays out; the calls b, c of the newest sweep are merged
    for name in ("mqar_full_h200.json", "mqar_full_h200_2026-11-29b.json", "mqar_full_h200_2026-11-29c.json"):
        _sweep_file(tmp_path / name, ["vla"], [])
    assert [f.name for f in R.latest_sweep(tmp_path)] == ["mqar_full_h200_2026-11-29b.json",
                                                          "mqar_full_h200_2026-11-29c.json"]
    _sweep_file(tmp_path / "mqar_full_h200_2026-12-01.json", ["vla"], [])
    assert [f.name for f in R.latest_sweep(tmp_path)] == ["mqar_full_h200_2026-12-01.json"]


def test_merge_lists_unfinished_runs_once_and_why(tmp_path):
    # call b: VLA done, the baselines skipped; call c (grouped, DeltaNet first): DeltaNet done, then cut
    # while linear attention trained, so its run is absent and softmax never started
    _sweep_file(tmp_path / "mqar_full_x_1b.json", ["vla", "deltanet", "linear_attn", "softmax"],
                [_run("vla", 8, 1e-3, 1.0, 1.0)] + [_skipped(m) for m in ("deltanet", "linear_attn", "softmax")])
    _sweep_file(tmp_path / "mqar_full_x_1c.json", ["deltanet", "linear_attn", "softmax"],
                [_run("deltanet", 8, 1e-3, 0.5, 0.5)])
    merged = R.load_latest(tmp_path)
    assert sorted(r["mixer"] for r in merged["runs"]) == ["deltanet", "vla"]
    assert sorted(r["mixer"] for r in merged["missing"]) == ["linear_attn", "softmax"]   # once each
    assert merged["meta"]["runs_skipped"] == 2
    b, c = R.unfinished_lines(merged)
    assert "skipped linear attention (1 run) and softmax attention (1 run)" in b and "DeltaNet" not in b
    assert "while it trained linear attention (1 run)" in c and "softmax attention (1 run) never started" in c


def test_well_above_with_one_baseline_measured():
    rows = R.claims(_result({"vla": {8: 0.99, 32: 0.99}, "deltanet": {8: 0.99, 32: 0.98}}))
    assert rows[2].verdict == "does not hold" and "linear attention: not measured" in rows[2].ours
    rows = R.claims(_result({"vla": {8: 0.99, 32: 0.99}, "deltanet": {8: 0.5, 32: 0.4}}))
    assert rows[2].verdict == "holds partly"     # at most partly until linear attention is measured


def test_a_later_call_trains_only_what_earlier_calls_left(tmp_path):
    # skip_done (benchmarks/mqar_gpu.py --skip-done): the runs finished in earlier calls are left out of
    # the jobs, kept out of the report's list of unfinished runs, and the calls merge to the whole sweep
    first = M.run(tiny(mixers=("softmax",)), progress=False)
    cfg = tiny(skip_done=M.done_keys([first]))
    assert [(j["mixer"], j["lr"]) for j in M.jobs_of(cfg)] == [("vla", 3e-3), ("vla", 1e-2)]
    second = json.loads(json.dumps(M.run(cfg, progress=False)))   # as read back from its JSON file
    assert R._missing_runs(second) == []
    merged = R.merge([first, second], ["a.json", "b.json"])
    assert merged["meta"]["runs_done"] == 4 and merged["missing"] == []
    assert {(e["mixer"], e["n_pairs"]) for e in merged["best"]} == {("softmax", 2), ("vla", 2)}


def test_runs_without_the_convolution_get_their_own_verdict_and_table():
    # main setting (kernel 4): VLA and DeltaNet equal; without it (one lr): VLA far above both baselines
    runs = [_run(m, n, 1e-3, 0.99, 0.99) for m in ("vla", "deltanet", "linear_attn") for n in (8, 32)]
    runs += [_run("vla", n, 1e-3, 0.95, 0.95, conv=0) for n in (8, 32)]
    runs += [_run(m, n, 1e-3, 0.2, 0.15 + 0.01 * n, conv=0) for m in ("deltanet", "linear_attn") for n in (8, 32)]
    result = {"head_dim": 32, "config": {"short_conv": 4, "steps": 3000, "batch_size": 64}, "runs": runs,
              "best": M.pick_best(runs, main_conv=4)}
    rows = R.claims(result)
    assert [r.verdict for r in rows] == ["holds", "holds partly", "does not hold", "holds"]
    assert "without the short convolution" in rows[3].claim and "learning rate 0.001 only" in rows[3].ours
    # VLA 0.95 against 0.23 and 0.47: 60 points on average, for both baselines
    assert "VLA − DeltaNet: +60.00 points" in rows[3].ours and "VLA − linear attention: +60.00 points" in rows[3].ours
    table = R.no_conv_table(result)
    assert table.count("\n") == 2 + 6 - 1 and "| DeltaNet | 32 | 0.001 | 47.0 / 0.0 | 99.0 / 0.0 |" in table
    # a sweep without such runs: three rows and no table
    main_only = {**result, "runs": runs[:6]}
    assert len(R.claims(main_only)) == 3 and R.no_conv_table(main_only) is None


def test_report_command_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(_result({"vla": {8: 1.0, 32: 0.99}, "deltanet": {8: 0.9, 32: 0.5}})))
    R.main([str(path), "--figure", str(tmp_path / "fig.png")])
    out = capsys.readouterr().out
    assert "| VLA | 100.0 / 100.0 | 99.0 / 99.0 |" in out and "| DeltaNet | 90.0 / 90.0 | 50.0 / 50.0 |" in out
    assert (tmp_path / "fig.png").stat().st_size > 0
