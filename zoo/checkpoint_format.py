"""The one definition of what the zoo writes and reads as weights: training checkpoints and weight bundles.

A training checkpoint (``trainers.checkpoint`` writes it) is a torch file holding a dict::

    {"format": FORMAT, "model": preset name, "config": resolved config (with "model_kwargs"),
     "G": state, "D": state, "G_ema": state or None, "opt_g": ..., "opt_d": ..., "step": int, ...}

A weight bundle has the same network keys (``G``, ``G_ema``, ``D``) without training state; the hub builds one
from a published folder (``model.safetensors`` + ``discriminator.safetensors`` + ``config.json``) or from an
official file it converted once into the cache (``*.zoo.safetensors``, tensor names ``PART/key``).
Imports nothing heavy: the trainer, the hub and tools all read the format through these names.
"""

from __future__ import annotations

import re
from pathlib import Path

FORMAT = "inpaint-zoo-checkpoint/1"
BUNDLE_FORMAT = "inpaint-zoo-bundle/1"

GENERATOR, GENERATOR_EMA, DISCRIMINATOR = "G", "G_ema", "D"
NETWORKS = (GENERATOR, GENERATOR_EMA, DISCRIMINATOR)
OPTIMIZERS = ("opt_g", "opt_d")
CONFIG, MODEL = "config", "model"
REQUIRED_KEYS = (GENERATOR, DISCRIMINATOR, *OPTIMIZERS, "step", CONFIG)

STEP_FILE = re.compile(r"step_(\d+)\.pt$")  # checkpoints/step_0001000.pt inside a run directory

# A published folder (the Hugging Face Hub layout): generator, optional discriminator, settings, model card.
PUBLISHED_MODEL, PUBLISHED_DISCRIMINATOR, PUBLISHED_CONFIG = "model.safetensors", "discriminator.safetensors", \
    "config.json"
PUBLISHED_FORMAT = "inpaint-zoo-published/1"


def is_zoo_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("inpaint-zoo-checkpoint")


def is_bundle(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == BUNDLE_FORMAT


def has_networks(obj) -> bool:
    """A zoo checkpoint or bundle: networks under ``G`` / ``G_ema`` / ``D``."""
    return is_zoo_checkpoint(obj) or is_bundle(obj)


def saved_model_name(obj) -> str | None:
    return obj.get(MODEL) if has_networks(obj) else None


def saved_model_kwargs(obj) -> dict:
    """The generator arguments a checkpoint or bundle was built with (widths, sizes), else {}."""
    if has_networks(obj):
        return dict((obj.get(CONFIG) or {}).get("model_kwargs") or {})
    return {}


def generator_state(obj, ema: bool = True) -> tuple[str, dict]:
    """(``"G_ema"`` or ``"G"``, state) of a checkpoint or bundle: the EMA generator when there is one and ``ema``."""
    if ema and obj.get(GENERATOR_EMA) is not None:
        return GENERATOR_EMA, obj[GENERATOR_EMA]
    if obj.get(GENERATOR) is None:  # a bundle of an EMA-only release
        return GENERATOR_EMA, obj[GENERATOR_EMA]
    return GENERATOR, obj[GENERATOR]


def discriminator_state(obj) -> dict | None:
    return obj.get(DISCRIMINATOR) if has_networks(obj) else None


def optimizer_states(obj) -> tuple[dict, dict] | None:
    if is_zoo_checkpoint(obj) and all(obj.get(k) is not None for k in OPTIMIZERS):
        return obj["opt_g"], obj["opt_d"]
    return None


def make_bundle(networks: dict, model: str | None = None, model_kwargs: dict | None = None, **meta) -> dict:
    """A bundle dict from ``{"G": state, "G_ema": state, "D": state}`` (missing parts None)."""
    bundle = {"format": BUNDLE_FORMAT, MODEL: model, CONFIG: {"model_kwargs": dict(model_kwargs or {})}, **meta}
    bundle.update({k: networks.get(k) for k in NETWORKS})
    return bundle


def newest_checkpoint(run_dir) -> Path | None:
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("step_*.pt") if STEP_FILE.search(p.name)] if folder.is_dir() else []
    return max(found, key=lambda p: int(STEP_FILE.search(p.name).group(1))) if found else None
