"""The ``vla`` command.

``vla reproduce NAME [--quick|--full] [--out DIR]`` runs one experiment of the paper's claims (or
``all``) and writes its results, figures and markdown; further subcommands are registered by the
modules that own them (see ``_SUBCOMMANDS``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional

# name -> (add_arguments(parser), run(args) -> int). Experiments register in vla.experiments.REGISTRY.
_SUBCOMMANDS: Dict[str, tuple] = {}


def register_subcommand(name: str, add_arguments: Callable, run: Callable, help: str = "") -> None:
    _SUBCOMMANDS[name] = (add_arguments, run, help)


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    from .experiments import REGISTRY

    p.add_argument("name", choices=sorted(REGISTRY) + ["all"], help="which claim to reproduce, or all")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="CPU-sized runs (the default)")
    g.add_argument("--full", dest="preset", action="store_const", const="full",
                   help="paper-sized runs (meant for a GPU)")
    p.set_defaults(preset="quick")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NAME.]FIELD=VALUE",
                   help="replace one config field of the preset, e.g. --set norm.max_len=2048 or "
                        "--set 'norm.d_heads=[16]' (VALUE is read as JSON, else as a string; NAME may be "
                        "left out when reproducing one experiment); may be repeated")
    p.add_argument("--reuse", action="store_true",
                   help="render from the existing OUT/NAME/results.json instead of running")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def parse_overrides(items: List[str], name: str) -> Dict[str, dict]:
    """``["norm.max_len=64", ...]`` -> ``{"norm": {"max_len": 64}}`` (values parsed as JSON if they can be)."""
    import json

    out: Dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"vla reproduce: --set expects [NAME.]FIELD=VALUE, got {item!r}")
        exp, dot, fld = key.rpartition(".")
        if not dot:
            if name == "all":
                raise SystemExit(f"vla reproduce all: --set {item!r} must name the experiment (NAME.FIELD=VALUE)")
            exp, fld = name, key
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(exp, {})[fld] = value
    return out


def _run_reproduce(args) -> int:
    from .report.reproduce import reproduce

    outcomes = reproduce(args.name, preset=args.preset, out=args.out, device=args.device, seed=args.seed,
                         overrides=parse_overrides(args.overrides, args.name), progress=args.progress,
                         reuse=args.reuse)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla", description="Variational Linear Attention tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reproduce", help="reproduce the paper's claims and write a report")
    _add_reproduce(p)
    p.set_defaults(_run=_run_reproduce)
    _load_plugins()
    for name, (add, run, hlp) in sorted(_SUBCOMMANDS.items()):
        sp = sub.add_parser(name, help=hlp)
        add(sp)
        sp.set_defaults(_run=run)
    return parser


def _load_plugins() -> None:
    """Import the modules that register further subcommands (each is optional while being built)."""
    import importlib

    for mod in ("vla.experiments.mqar_cli",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
