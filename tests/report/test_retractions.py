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
