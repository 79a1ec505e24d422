"""What every report module returns, and small markdown helpers.

A report module ``vla/report/<name>.py`` turns one experiment's result (the plain data its ``run()``
returned) into a :class:`Section`: markdown text, the figures it saved, and one :class:`ClaimRow`
per claim of the paper it measures, with a verdict derived from the measured numbers.
"""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence

VERDICTS = ("holds", "holds partly", "does not hold", "not measured")

PRESET_LABELS = {
    "quick": "quick: CPU-sized, smaller than the paper's runs",
    "full": "full: paper-sized runs",
}


def preset_label(preset: str) -> str:
    return PRESET_LABELS.get(preset, preset)


@dataclass
class ClaimRow:
    """One claim of the paper: the paper's number, ours, and whether the claim holds."""

    claim: str
    paper: str
    ours: str
    verdict: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class Section:
    """A report module's output.

    ``markdown`` links figures by their file name (they are saved next to the section's report.md);
    :meth:`relocated` rewrites those links for a report that lives one folder up.
    """

    title: str
    markdown: str
    figures: List[pathlib.Path] = field(default_factory=list)
    claims: List[ClaimRow] = field(default_factory=list)

    def relocated(self, prefix: str) -> str:
        """The markdown with every link to one of this section's figures prefixed by ``prefix/``."""
        text = self.markdown
        for fig in self.figures:
            name = pathlib.Path(fig).name
            text = re.sub(r"\]\(" + re.escape(name) + r"\)", f"]({prefix}/{name})", text)
        return text


def figure_md(path, alt: str) -> str:
    """Markdown for an image saved in the section's folder (linked by file name)."""
    return f"![{alt}]({pathlib.Path(path).name})"


def md_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured markdown table; cells are converted with ``str``."""
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(x) for x in r) + " |")
    return "\n".join(lines)


def claims_table(claims: Sequence[ClaimRow]) -> str:
    return md_table(["claim", "paper", "ours", "verdict"],
                    [(c.claim, c.paper, c.ours, f"**{c.verdict}**") for c in claims])


def fmt(x: Optional[float], digits: int = 3) -> str:
    """A number with ``digits`` significant digits, no scientific notation for ordinary sizes."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if -3 <= mag < 6:
        decimals = max(digits - 1 - mag, 0)
        return f"{x:.{decimals}f}"
    return f"{x:.{digits - 1}e}"


def fmt_pm(mean: float, spread: float, digits: int = 3) -> str:
    return f"{fmt(mean, digits)} ± {fmt(spread, 2)}"
