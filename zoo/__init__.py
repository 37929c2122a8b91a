"""inpaint-zoo: GAN inpainting generators behind one registry and one tensor convention.

Nothing is imported until it is used (PEP 562): ``import zoo.errors`` or ``zoo --help`` costs no torch, and
the registry imports a family's module only when one of its presets is asked for.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "InpaintOutput": "zoo.contract",
    "composite": "zoo.contract",
    "masked_input": "zoo.contract",
    "ZooError": "zoo.errors",
    "create_model": "zoo.registry",
    "get_preset": "zoo.registry",
    "list_models": "zoo.registry",
    "register_model": "zoo.registry",
    "inpaint": "zoo.api",
    "load": "zoo.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:  # a submodule, e.g. ``zoo.deepfill`` after a bare ``import zoo``
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
