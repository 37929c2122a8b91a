"""Discriminators shared by the generator families, by name.

Every discriminator is called as ``D(image, mask, *extra_images)`` (zoo convention: image in [-1, 1],
mask 1 = hole) and returns a logit tensor, or a tuple of logit tensors when it has several heads
(global + local critics, MAT's stage-1 head). Factories accept ``image_size``: the trainer passes the size
it trains at, which fixes the dense layers of critics that have them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from zoo.errors import lookup_name, register_name

_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}


def register_discriminator(name: str):
    def wrap(fn):
        register_name(_DISCRIMINATORS, "discriminator", name, fn)
        return fn

    return wrap


def create_discriminator(name: str, **kwargs) -> nn.Module:
    return lookup_name(_DISCRIMINATORS, "discriminator", name)(**kwargs)


def list_discriminators() -> list[str]:
    return sorted(_DISCRIMINATORS)


from discriminators import global_local, patchgan, stylegan  # noqa: E402,F401  (register)
