"""Withdrawn benchmark rows (benchmarks/results/retracted.json) never reach a report."""

import json

from vla.report.speed import load_suite


def test_retracted_rows_are_dropped_and_explained(tmp_path):
    suite = {"results": [{"op": "fused", "mode": "fwd", "T": 1024, "ms": 1.0, "status": "ok"},
                         {"op": "bad", "mode": "fwd", "T": 1024, "ms": 0.1, "status": "ok"}]}
    (tmp_path / "suite_x.json").write_text(json.dumps(suite))
    assert len(load_suite(tmp_path / "suite_x.json")["results"]) == 2
    (tmp_path / "retracted.json").write_text(json.dumps({"suite_x.json": {"bad": "wrong outputs"}}))
    loaded = load_suite(tmp_path / "suite_x.json")
    assert [r["op"] for r in loaded["results"]] == ["fused"]
    assert loaded["retracted"] == {"bad": "wrong outputs"}


def test_retraction_of_one_mode_keeps_the_other(tmp_path):
    suite = {"results": [{"op": "k", "mode": "fwd", "T": 1024, "ms": 1.0, "status": "ok"},
                         {"op": "k", "mode": "fwdbwd", "T": 1024, "ms": 3.0, "status": "ok"}]}
    (tmp_path / "suite_x.json").write_text(json.dumps(suite))
    (tmp_path / "retracted.json").write_text(json.dumps({"suite_x.json": {"k/fwdbwd": "other build"}}))
    loaded = load_suite(tmp_path / "suite_x.json")
    assert [(r["op"], r["mode"]) for r in loaded["results"]] == [("k", "fwd")]


def test_partial_runs_are_reported_after_the_complete_one(tmp_path):
    from vla.report.speed import later_run_lines, suite_runs

    full = {"results": [{"op": "naive", "mode": "fwd", "T": 1024, "ms": 400.0, "status": "ok"}]}
    part = {"partial": True, "config": {"ops": ["naive", "chunk_triton"]},
            "results": [{"op": "naive", "mode": "fwd", "T": 1024, "ms": 500.0, "status": "ok"},
                        {"op": "chunk_triton", "mode": "fwd", "T": 1024, "ms": 2.0, "status": "ok"}]}
    (tmp_path / "suite_a.json").write_text(json.dumps(full))
    (tmp_path / "suite_b.json").write_text(json.dumps(part))
    (main, _), later = suite_runs(tmp_path)
    assert main.name == "suite_a.json"
    (path, run), = later
    text = "\n".join(later_run_lines(run, "title"))
    assert path.name == "suite_b.json" and "250x at T=1024" in text  # within the later run: 500 / 2


def test_runs_of_fewer_ops_are_reported_after_the_whole_suite(tmp_path):
    # a later, complete run of only some ops (a focused re-measurement) must not replace the run of the
    # whole suite, whose ops the claims table needs together
    from vla.report.speed import SUITE_OPS, suite_runs

    row = {"op": "naive", "mode": "fwd", "T": 1024, "ms": 400.0, "status": "ok"}
    (tmp_path / "suite_a.json").write_text(json.dumps({"config": {"ops": list(SUITE_OPS)}, "results": [row]}))
    (tmp_path / "suite_b.json").write_text(json.dumps({"config": {"ops": ["naive", "sdpa"]}, "results": [row]}))
    (main, _), later = suite_runs(tmp_path)
    assert main.name == "suite_a.json"
    assert [p.name for p, _ in later] == ["suite_b.json"]
    (tmp_path / "suite_c.json").write_text(json.dumps({"config": {"ops": list(SUITE_OPS)}, "results": [row]}))
    (main, _), later = suite_runs(tmp_path)
    assert main.name == "suite_c.json" and later == []


def test_later_runs_state_the_sdpa_crossover(tmp_path):
    from vla.report.speed import later_run_lines, suite_runs

    rows = [{"op": op, "mode": "fwd", "T": T, "ms": ms, "status": "ok"}
            for op, T, ms in (("chunk_triton", 1024, 2.0), ("chunk_triton", 2048, 3.0), ("chunk_triton", 4096, 5.0),
                              ("sdpa", 1024, 1.0), ("sdpa", 2048, 4.0), ("sdpa", 4096, 16.0))]
    (tmp_path / "suite_a.json").write_text(json.dumps({"results": rows[:1]}))
    (tmp_path / "suite_b.json").write_text(json.dumps({"config": {"ops": ["chunk_triton", "sdpa"]}, "results": rows}))
    (_, run), = suite_runs(tmp_path)[1]
    assert "vs causal SDPA, fwd: faster from T=2048 on (measured T=1024..4096)" in "\n".join(later_run_lines(run, "t"))
