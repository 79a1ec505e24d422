"""One module per claim of the paper. Each has a config dataclass with presets and a ``run()`` that
returns plain data (dicts and lists) and writes nothing; ``vla.report`` turns that into files.

REGISTRY maps a name (``vla reproduce NAME``) to the module path that provides ``Config``,
``config_for(preset)`` and ``run(config, device)``; modules are imported lazily.
"""

REGISTRY = {
    "norm": "vla.experiments.state_norm",
}
