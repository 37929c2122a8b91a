"""Image sources, split manifests, seeded mask generators and the datasets the trainer reads.

Names are imported when first used (PEP 562), so ``import data.masks`` or ``zoo split`` loads neither torch
nor torchvision.
"""

import importlib

_EXPORTS = {
    "InpaintingStream": "data.datasets",
    "fixed_batch": "data.datasets",
    "to_tensor": "data.datasets",
    "default_images": "data.images",
    "list_images": "data.images",
    "load_image": "data.images",
    "read_split": "data.images",
    "resolve_source": "data.images",
    "write_split": "data.images",
    "MASK_GENERATORS": "data.masks",
    "make_mask": "data.masks",
    "read_mask_file": "data.masks",
    "register_mask": "data.masks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
