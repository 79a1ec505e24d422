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
    from vla.report.speed import latest_result, later_runs, later_run_lines

    full = {"results": [{"op": "naive", "mode": "fwd", "T": 1024, "ms": 400.0, "status": "ok"}]}
    part = {"partial": True, "config": {"ops": ["naive", "chunk_triton"]},
            "results": [{"op": "naive", "mode": "fwd", "T": 1024, "ms": 500.0, "status": "ok"},
                        {"op": "chunk_triton", "mode": "fwd", "T": 1024, "ms": 2.0, "status": "ok"}]}
    (tmp_path / "suite_a.json").write_text(json.dumps(full))
    (tmp_path / "suite_b.json").write_text(json.dumps(part))
    assert latest_result(tmp_path)[0].name == "suite_a.json"
    (path, run), = later_runs(tmp_path)
    text = "\n".join(later_run_lines(run, "title"))
    assert path.name == "suite_b.json" and "250x at T=1024" in text  # within the later run: 500 / 2
