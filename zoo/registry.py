"""Model registry: a preset names a generator factory and the recipe its paper trained it with.

Families register presets with ``@register_model(...)`` on a small function that returns the generator,
in the spirit of timm. The trainer reads everything it needs from ``get_preset(name).recipe``, so it has no
family-specific branches.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import UnknownNameError, register_name

if TYPE_CHECKING:
    from torch import nn

# The zoo's family modules and the presets each registers. A family is imported when one of its presets is
# first asked for (``list_models`` imports them all), so importing the registry, the contract or the data
# package loads no generator code; tests check this table against what the modules register.
FAMILIES = {
    "zoo.deepfill": ("deepfill_v1", "deepfill_v2"),
    "zoo.mhtma": ("mhtma", "mhtma_sketch"),
    "zoo.ra": ("ra",),
    "zoo.mat": ("mat", "mat_256"),
    "zoo.hint": ("hint",),
}


@dataclass(frozen=True)
class LossTerm:
    """One reconstruction / feature term of the generator loss, applied to one stage.

    ``name`` is a key of ``losses.RECONSTRUCTION_LOSSES`` (``l1``, ``discounted_l1``, ``perceptual``,
    ``style``); ``stage`` indexes ``InpaintOutput.stages`` (0 = coarse, -1 = final); ``on`` says whether the
    term sees the raw prediction or the composite ``image * (1 - mask) + pred * mask``.
    """

    name: str
    weight: float = 1.0
    stage: int = -1
    on: str = "raw"
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AdversarialSpec:
    """How the discriminator is trained and how its verdict enters the generator loss.

    ``loss``: ``hinge`` | ``wgan_gp`` | ``rals`` | ``lsgan`` | ``nonsaturating`` (see ``losses.adversarial``).
    ``fake``: the discriminator sees the ``composite`` or the ``raw`` prediction.
    ``stages``: stages handed to the discriminator, main head first; a discriminator with several heads
    (MAT's) receives ``D(stage_a, mask, stage_b, ...)`` and returns one logit tensor per head.
    """

    loss: str = "hinge"
    weight: float = 1.0
    fake: str = "composite"
    stages: tuple[int, ...] = (-1,)
    d_steps: int = 1
    gp_weight: float = 10.0
    gp_hole_only: bool = False
    r1_gamma: float = 0.0
    r1_interval: int = 1
    # Reconstruction warm-up (Iizuka et al. 2017, whose global-local critic MHTMA uses, train the completion
    # network alone first): for the first ``warmup_steps`` generator steps neither D nor the adversarial term
    # runs. 0 = adversarial from the start.
    warmup_steps: int = 0


LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class OptimSpec:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    # Learning-rate schedule: ``constant`` (the papers'), or ``cosine`` / ``linear`` decay to 0 at step
    # ``schedule_steps`` (0: the run's max_steps) after ``warmup_steps`` of linear warm-up. A short run then
    # ends at a low rate, where its weights settle instead of jumping about.
    schedule: str = "constant"
    warmup_steps: int = 0
    schedule_steps: int = 0


@dataclass(frozen=True)
class Recipe:
    """Everything the trainer needs to train a preset the way its paper did."""

    discriminator: str
    losses: tuple[LossTerm, ...]
    adversarial: AdversarialSpec = field(default_factory=AdversarialSpec)
    discriminator_kwargs: dict = field(default_factory=dict)
    optim_g: OptimSpec = field(default_factory=OptimSpec)
    optim_d: OptimSpec = field(default_factory=OptimSpec)
    batch_size: int = 16
    masks: str = "free_form"
    mask_kwargs: dict = field(default_factory=dict)
    # EMA of G: half-life in thousands of images (StyleGAN2 convention), None = no EMA.
    ema_kimg: float | None = None
    # Optional ``fn(image, mask) -> dict`` of extra generator kwargs built per batch (e.g. a sketch).
    condition: Callable[..., dict] | None = None
    # Generator kwargs for training only, merged into a run's ``model_kwargs`` (e.g. activation checkpointing).
    train_model_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    name: str
    factory: Callable[..., nn.Module]
    recipe: Recipe
    native_size: int
    size_multiple: int
    num_stages: int
    paper: str
    width_arg: str = "cnum"
    defaults: dict = field(default_factory=dict)
    # Overrides that build a tiny version of the same architecture, and the size it runs at in tests.
    tiny: dict = field(default_factory=dict)
    tiny_size: int = 64
    # Factory keyword that must match the training size (layers tied to the resolution, e.g. RA's shared
    # linear layers). The trainer config fills it from the training size unless it is set explicitly.
    size_arg: str | None = None
    # Released weights: ``{tag: zoo.weights_table.WeightEntry}`` (see ``weight_table``), the first the default.
    checkpoints: dict = field(default_factory=dict)
    # ``fn(obj, path, model) -> state_dict`` mapping an official checkpoint onto this generator, or None.
    # ``obj`` is ``torch.load(path, weights_only=True)``, or None when the file is not a torch file
    # (e.g. a pickle), in which case the function reads ``path`` itself.
    convert_checkpoint: Callable[[Any, Any, nn.Module], dict] | None = None
    # ``fn(obj, path, D) -> state_dict or None``: the discriminator of an official file (or of the file beside
    # it), for fine-tuning with the released D; None when the file holds none.
    convert_discriminator: Callable[[Any, Any, nn.Module], dict | None] | None = None
    # A factory argument that sets the input size multiple instead of ``size_multiple``, for families whose
    # structure depends on a build resolution (MAT: a tiny model built for 64 px takes multiples of 64).
    size_multiple_arg: str | None = None
    # Parameters of the generator at its default width, as ``zoo list`` prints them without building it
    # (building the large ones costs seconds even on the meta device); tests/test_contract.py checks it.
    num_params: int | None = None

    def input_multiple(self, overrides: dict | None = None) -> int:
        """The size multiple a generator built with ``overrides`` (on top of the defaults) needs."""
        kwargs = {**self.defaults, **(overrides or {})}
        if self.size_multiple_arg and self.size_multiple_arg in kwargs:
            return int(kwargs[self.size_multiple_arg])
        return self.size_multiple


_PRESETS: dict[str, Preset] = {}


def register_model(name: str, **preset_fields):
    """Decorator registering ``fn(**overrides) -> generator`` as preset ``name``."""

    def wrap(fn):
        register_name(_PRESETS, "model", name, Preset(name=name, factory=fn, **preset_fields))
        return fn

    return wrap


def _import_families(name: str | None = None) -> None:
    """Import the family module that registers preset ``name`` (every family when ``name`` is None)."""
    for module, names in FAMILIES.items():
        if name is None or name in names:
            importlib.import_module(module)


def list_models() -> list[str]:
    _import_families()
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    if name not in _PRESETS:
        _import_families(name)
    try:
        return _PRESETS[name]
    except (KeyError, TypeError):
        raise UnknownModelError(name) from None


def create_model(name: str, **overrides) -> nn.Module:
    """Build the generator of preset ``name``; keyword overrides (e.g. ``cnum=8``) reach its factory."""
    preset = get_preset(name)
    model = preset.factory(**{**preset.defaults, **overrides})
    model.zoo_name = name
    model.zoo_size_multiple = preset.input_multiple(overrides)
    return model


def replace_recipe(recipe: Recipe, **changes) -> Recipe:
    return dataclasses.replace(recipe, **changes)


class UnknownModelError(UnknownNameError):
    def __init__(self, name):
        super().__init__("model", name, list_models())
