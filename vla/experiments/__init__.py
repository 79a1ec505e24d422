"""One module per claim of the paper; ``vla reproduce NAME`` runs one (or ``all``) and reports it.

The interface every experiment follows
--------------------------------------
An experiment module ``vla/experiments/<module>.py`` provides:

``Config``
    a dataclass holding every setting of the run, with a ``seed: int`` field. Defaults live here and
    in SPEC.md §1 only, never repeated at call sites.
``config_for(preset: str, **overrides) -> Config``
    ``preset`` is ``"quick"`` (CPU-sized: finishes in about a minute on a 2-core CPU, smaller than the
    paper's runs) or ``"full"`` (the paper's sizes, meant for a GPU). ``overrides`` replace single
    fields; an unknown preset or field raises ``ValueError`` naming it. :func:`build_config` does this.
``run(config, device="cpu", progress=True) -> dict``
    runs the experiment and returns plain JSON-able data (dicts, lists, numbers, strings) that
    includes ``"config"`` (the settings used). It writes nothing and draws nothing; with
    ``progress`` it shows a tqdm bar on stderr.

Its report module ``vla/report/<name>.py`` (``name`` is the key below) provides
``render(result: dict, out_dir: pathlib.Path) -> vla.report.common.Section``: it saves its figures
into ``out_dir`` and returns markdown, the figure paths and one ``ClaimRow`` per claim of the paper it
measures, with a verdict derived from the numbers in ``result`` (never written in by hand).

REGISTRY maps a name to the module path of its experiment, imported lazily, so a name may be
registered before its module exists (``vla reproduce all`` then reports it as not available). A
value of :data:`RENDER_ONLY` registers a section that runs nothing: its report module also provides
``load() -> dict``, which reads committed results (e.g. ``benchmarks/results/*.json``), and the
preset does not apply to it. Order matters: ``all`` runs and reports in this order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Type

RENDER_ONLY = "render-only"

REGISTRY = {
    "norm": "vla.experiments.state_norm",
    "jacobian": "vla.experiments.jacobian",
    "mqar": "vla.experiments.mqar",
    "speed": RENDER_ONLY,
}

PRESETS = ("quick", "full")


def build_config(config_cls: Type, presets: Mapping[str, Mapping[str, Any]], preset: str,
                 overrides: Dict[str, Any]):
    """``config_cls(**presets[preset], **overrides)``, checking the preset and field names.

    A list given for a tuple-valued field (as JSON on the command line gives) becomes a tuple.
    """
    if preset not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {preset!r}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = dict(presets[preset])
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"{key!r} is not a setting of {config_cls.__module__}.{config_cls.__name__}; "
                             f"known: {sorted(fields)}")
        default = fields[key].default
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        values[key] = value
    return config_cls(**values)
