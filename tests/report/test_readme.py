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
