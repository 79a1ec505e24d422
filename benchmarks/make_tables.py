"""Regenerate the markdown tables and the log-log figure from suite JSON results (no GPU needed).

Usage:
    python benchmarks/make_tables.py                                   # every benchmarks/results/suite_*.json
    python benchmarks/make_tables.py benchmarks/results/suite_h200_2026-11-29.json --out-dir /tmp/speed

For each ``suite_X.json`` it writes ``suite_X.md`` (claims table, then the tables) and ``suite_X.png``
(next to the JSON unless --out-dir is given), through ``vla.report.speed.render``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vla.report.common import claims_table  # noqa: E402
from vla.report.io import write_text  # noqa: E402
from vla.report.speed import load_suite, render  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="*", help="suite result files (default: benchmarks/results/suite_*.json)")
    ap.add_argument("--out-dir", default=None, help="where to write (default: next to each JSON)")
    args = ap.parse_args(argv)
    files = [pathlib.Path(p) for p in args.json] or sorted((ROOT / "benchmarks" / "results").glob("suite_*.json"))
    if not files:
        raise SystemExit("no suite JSON found")
    for path in files:
        result = load_suite(path)
        out_dir = pathlib.Path(args.out_dir) if args.out_dir else path.parent
        section = render(result, out_dir, name=path.stem)
        text = f"# {section.title}\n\nFrom `{path.name}` (raw results; regenerate with `python benchmarks/make_tables.py`).\n\n"
        text += claims_table(section.claims) + "\n\n" + section.markdown + "\n"
        md = write_text(out_dir / f"{path.stem}.md", text)
        print(f"wrote {md} and {section.figures[0]}")


if __name__ == "__main__":
    main()
