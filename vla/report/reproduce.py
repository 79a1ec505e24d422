"""``vla reproduce``: run experiments, write their results, figures and markdown reports.

For each experiment ``name`` the output folder gets ``<out>/<name>/results.json`` (written as soon as
the experiment finishes), its figures and ``<out>/<name>/report.md``; ``all`` also writes
``<out>/REPORT.md`` (rewritten after every experiment, so an interrupted run keeps what finished):
the claims table of every section, then the sections themselves.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import pathlib
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .common import ClaimRow, Section, claims_table, preset_label
from .io import read_json, write_json, write_text

PAPER = "Variational Linear Attention (arXiv 2605.11196)"


@dataclass
class Outcome:
    """What happened to one experiment: ``status`` is "done", "missing" or "failed"."""

    name: str
    status: str
    section: Optional[Section] = None
    note: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)


def _missing(err: ModuleNotFoundError, module: str) -> bool:
    """Whether ``err`` says that ``module`` itself (or a package above it) does not exist."""
    return err.name is not None and (module == err.name or module.startswith(err.name + "."))


@functools.lru_cache(maxsize=1)
def _git_commit() -> Optional[str]:
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def resolve_device(device: Optional[str]) -> str:
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _section_report(name: str, section: Section, meta: dict) -> str:
    lines = [f"# {section.title}", "", _meta_line(meta), ""]
    if section.claims:
        lines += [claims_table(section.claims), ""]
    lines += [section.markdown.rstrip(), ""]
    return "\n".join(lines)


def _meta_line(meta: dict) -> str:
    if meta.get("render_only"):
        head = "from committed results (nothing was run; the preset does not apply)"
    else:
        head = f"preset **{preset_label(meta.get('preset', '?'))}**"
    bits = [head]
    for key in ("seed", "device", "elapsed_s", "commit", "finished"):
        if meta.get(key) is not None:
            val = meta[key]
            bits.append(f"{key.replace('_s', '')} {val:.0f} s" if key == "elapsed_s" else f"{key} {val}")
    return "_" + " · ".join(bits) + "_"


def write_full_report(out: pathlib.Path, outcomes: List[Outcome], preset: str, pending: List[str] = ()) -> pathlib.Path:
    """``<out>/REPORT.md``: every claim in one table, then every section."""
    claims: List[ClaimRow] = [c for o in outcomes if o.section for c in o.section.claims]
    lines = [f"# Reproduction report: {PAPER}", "",
             f"Preset: **{preset_label(preset)}**. Generated "
             f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
             + (f" from commit {_git_commit()}" if _git_commit() else "") + ".", "",
             "Each verdict is computed from the measured numbers by the section's report code; "
             "the thresholds are stated in each section.", "", "## Claims", ""]
    lines.append(claims_table(claims) if claims else "_No claims measured yet._")
    notes = [f"- `{o.name}`: {o.note}" for o in outcomes if o.status != "done"]
    notes += [f"- `{n}`: not run yet (the run was interrupted or is still going)" for n in pending]
    if notes:
        lines += ["", "Not in this report:", ""] + notes
    for i, o in enumerate(o for o in outcomes if o.section):
        lines += ["", f"## {i + 1}. {o.section.title}", "", _meta_line(o.meta), "",
                  o.section.relocated(o.name).rstrip()]
    path = pathlib.Path(out) / "REPORT.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _render(name: str, result: dict, exp_dir: pathlib.Path) -> Section:
    module = f"vla.report.{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if not _missing(e, module):
            raise
        return Section(title=name, markdown=f"No report module `{module}` yet: the raw numbers are in "
                                            f"[results.json](results.json).\n")
    return mod.render(result, exp_dir)


def run_one(name: str, preset: str, out: pathlib.Path, device: str, seed: int,
            overrides: Optional[dict] = None, progress: bool = True, reuse: bool = False) -> Outcome:
    """Run (or load) one registered experiment, write its results and report; errors propagate."""
    from ..experiments import REGISTRY, RENDER_ONLY

    target = REGISTRY[name]
    exp_dir = pathlib.Path(out) / name
    meta: Dict[str, Any] = {"name": name, "preset": preset, "seed": seed, "device": device,
                            "commit": _git_commit()}
    t0 = time.perf_counter()
    if target == RENDER_ONLY:
        module = f"vla.report.{name}"
        try:
            result = importlib.import_module(module).load()
        except ModuleNotFoundError as e:
            if not _missing(e, module):
                raise
            return Outcome(name, "missing", note=f"not available: report module `{module}` is not in this version")
        meta = {"name": name, "render_only": True, "commit": meta["commit"]}
    elif reuse:
        path = exp_dir / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"--reuse: {path} does not exist; run `vla reproduce {name}` first")
        saved = read_json(path)
        result, meta = saved["result"], saved.get("meta", meta)
    else:
        try:
            mod = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if not _missing(e, target):
                raise
            return Outcome(name, "missing", note=f"not measured: module `{target}` is not in this version")
        config = mod.config_for(preset, **{"seed": seed, **(overrides or {})})  # an explicit --set seed wins
        meta["seed"] = getattr(config, "seed", seed)
        _log(f"[{name}] running ({preset_label(preset)}) on {device} ...")
        result = mod.run(config, device=device, progress=progress)
        meta["elapsed_s"] = time.perf_counter() - t0
    if not reuse:
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        write_json(exp_dir / "results.json", {"meta": meta, "result": result})
    section = _render(name, result, exp_dir)
    write_text(exp_dir / "report.md", _section_report(name, section, meta))
    _log(f"[{name}] wrote {exp_dir}/ (results.json, report.md, {len(section.figures)} figure(s))")
    for c in section.claims:  # the headline numbers, on stdout
        print(f"[{name}] {c.claim}\n    paper: {c.paper}\n    ours:  {c.ours}\n    verdict: {c.verdict}", flush=True)
    return Outcome(name, "done", section=section, meta=meta)


def reproduce(name: str, preset: str = "quick", out="outputs", device: Optional[str] = None, seed: int = 0,
              overrides: Optional[Dict[str, Dict[str, Any]]] = None, progress: bool = True,
              reuse: bool = False) -> List[Outcome]:
    """Run experiment ``name`` (a key of ``vla.experiments.REGISTRY``) or ``"all"`` and write the report.

    ``overrides`` maps an experiment name to config fields replacing the preset's (e.g.
    ``{"norm": {"max_len": 512}}``); ``reuse`` renders from an existing results.json without running.
    With ``all``, an experiment whose module does not exist yet is listed as not measured and one that
    fails is reported and skipped (its traceback goes to stderr); a single experiment's error propagates.
    """
    from ..experiments import PRESETS, REGISTRY

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    if name != "all" and name not in REGISTRY:
        raise ValueError(f"name must be one of {sorted(REGISTRY) + ['all']}, got {name!r}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(REGISTRY)
    if unknown:
        raise ValueError(f"overrides name unknown experiments {sorted(unknown)}; known: {sorted(REGISTRY)}")
    out = pathlib.Path(out)
    device = resolve_device(device)
    if name != "all":
        o = run_one(name, preset, out, device, seed, overrides.get(name), progress, reuse)
        if o.status == "missing":
            raise ValueError(f"{name}: {o.note}")
        return [o]

    outcomes: List[Outcome] = []
    names = list(REGISTRY)
    for i, n in enumerate(names):
        try:
            o = run_one(n, preset, out, device, seed, overrides.get(n), progress, reuse)
        except KeyboardInterrupt:
            write_full_report(out, outcomes, preset, pending=names[i:])
            raise
        except Exception as e:  # report and go on with the others
            traceback.print_exc()
            o = Outcome(n, "failed", note=f"failed: {type(e).__name__}: {e}")
        if o.status != "done":
            _log(f"[{n}] {o.note}")
        outcomes.append(o)
        write_full_report(out, outcomes, preset, pending=names[i + 1:])
    _log(f"wrote {out / 'REPORT.md'}")
    return outcomes
