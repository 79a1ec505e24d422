"""Atomic file writing for everything the reports produce.

Every file is written to a temporary file in the destination folder and then moved into place with
``os.replace``, so that a reader (or an interrupted run) sees either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any, Union

PathLike = Union[str, os.PathLike]


def _atomic_write(path: PathLike, write, mode: str = "w", suffix: str = "") -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data: tuples become lists, numpy/torch scalars and arrays become numbers and lists,
    paths become strings, and non-finite floats become None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(path: PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented, strict JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n"
    return _atomic_write(path, lambda f: f.write(text))


def read_json(path: PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_text(path: PathLike, text: str) -> pathlib.Path:
    """Write a text file atomically."""
    return _atomic_write(path, lambda f: f.write(text))


def save_figure(fig, path: PathLike, dpi: int = 130) -> pathlib.Path:
    """Save a matplotlib figure atomically (format from the file's extension) and release it."""
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        return _atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"),
                             mode="wb", suffix=path.suffix)
    finally:
        if getattr(fig.canvas, "manager", None) is not None:  # made by pyplot: release it there
            import matplotlib.pyplot as plt

            plt.close(fig)
