"""The README's results block is generated from the committed raw results, never edited by hand."""

from vla.report import readme


def test_readme_results_block_is_up_to_date():
    text = (readme.ROOT / "README.md").read_text()
    assert readme.updated_readme(text) == text, "run: python -m vla.report.readme"


def test_block_is_built_from_results(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    block = readme.block(tmp_path)
    assert block.startswith(readme.BEGIN) and block.endswith(readme.END)
    assert "No GPU suite results committed yet." in block and "No CPU chunk benchmark committed yet." in block


def test_mqar_block_merges_the_newest_sweep_and_names_what_is_missing(tmp_path):
    from tests.experiments.test_mqar import _run, _skipped, _sweep_file

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    assert "No MQAR GPU results committed yet." in readme.block(tmp_path)
    _sweep_file(results / "mqar_full_old.json", ["softmax"], [_run("softmax", 8, 1e-3, 1.0, 1.0)], grouped=False)
    _sweep_file(results / "mqar_full_x_1b.json", ["vla", "deltanet", "linear_attn", "softmax"],
                [_run("vla", 8, 1e-3, 1.0, 1.0)] + [_skipped(m) for m in ("deltanet", "linear_attn", "softmax")])
    _sweep_file(results / "mqar_full_x_1c.json", ["deltanet", "linear_attn", "softmax"],
                [_run("deltanet", 8, 1e-3, 0.5, 0.5)])
    block = readme.block(tmp_path)
    assert "mqar_full_x_1b.json` and `benchmarks/results/mqar_full_x_1c.json`, merged" in block
    assert "mqar_full_old" not in block and "| softmax attention |" not in block
    assert "**Not measured in this sweep**: linear attention and softmax attention" in block
    assert "VLA − DeltaNet at each one's best learning rate" in block and "n=8 +50.00 / +0.0" in block


def test_speed_block_shows_the_newest_later_run_and_names_the_others(tmp_path):
    import json

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    ok = lambda op, ms: {"op": op, "mode": "fwd", "T": 1024, "ms": ms, "status": "ok"}  # noqa: E731
    (results / "suite_a.json").write_text(json.dumps({"results": [ok("naive", 400.0)]}))
    for name, ms in (("suite_b.json", 4.0), ("suite_c.json", 2.0)):
        run = {"config": {"ops": ["naive", "chunk_triton"]}, "results": [ok("naive", 400.0), ok("chunk_triton", ms)]}
        (results / name).write_text(json.dumps(run))
    block = readme.block(tmp_path)
    assert "Runs between that one and the newest: `suite_b.json`" in block
    assert "**Newest run** `benchmarks/results/suite_c.json`" in block and "200x at T=1024" in block
    assert "100x at T=1024" not in block   # suite_b's ratio: named, not shown
