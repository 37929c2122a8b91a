"""The unified coarse-to-fine GAN trainer (accelerate) and its configuration; metrics and evaluation.

Names are imported when first used (PEP 562): ``trainers.metrics`` or ``trainers.evaluation`` do not pull in
accelerate and the training loop.
"""

import importlib

_EXPORTS = {"resolve_config": "trainers.config", "train": "trainers.trainer"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
