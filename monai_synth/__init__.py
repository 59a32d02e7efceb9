"""monai_synth: a MONAI extension that turns a small labelled dataset into a labelled-data factory.

Sub-packages are imported lazily (``monai_synth.data``, ``monai_synth.transforms`` ...) so that
``import monai_synth`` stays cheap and never fails because an optional extra is missing.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "apps",
    "augment",
    "data",
    "engines",
    "evaluation",
    "handlers",
    "inferers",
    "losses",
    "metrics",
    "networks",
    "transforms",
    "utils",
]

_SUBMODULES = set(__all__) - {"__version__"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
