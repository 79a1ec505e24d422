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
