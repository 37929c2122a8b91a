"""inpaint-zoo: GAN inpainting generators behind one registry and one tensor convention."""

from zoo import deepfill, hint, mat, mhtma, ra  # noqa: F401  (importing a family registers its presets)
from zoo.api import inpaint, load
from zoo.contract import InpaintOutput, composite, masked_input
from zoo.errors import ZooError
from zoo.registry import create_model, get_preset, list_models, register_model

__all__ = [
    "InpaintOutput",
    "ZooError",
    "composite",
    "create_model",
    "get_preset",
    "inpaint",
    "list_models",
    "load",
    "masked_input",
    "register_model",
]
