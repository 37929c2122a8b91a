"""The resolved training configuration: preset recipe + config file + command-line flags + ``--set`` overrides.

A run directory stores the resolved config as ``config.yaml``; passing it back with ``--config`` reproduces
the run. The recipe is stored whole, so ``--set recipe.optim_g.lr=2e-4`` or
``--set recipe.adversarial.weight=0.1`` change one number without touching code.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from zoo.errors import ZooError
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, get_preset

# Defaults of everything that is not part of the recipe. ``None`` = derived at resolve time.
TRAIN_DEFAULTS = dict(
    model=None,
    model_kwargs={},
    data=None,
    size=None,
    batch_size=None,
    max_steps=2000,
    seed=0,
    out=None,
    workers=None,
    log_every=10,
    sample_every=200,
    save_every=500,
    keep_checkpoints=2,
    preview_count=4,
    tracker="wandb",
    weights_dir=None,
    allow_random_vgg=True,
    ema_kimg=None,
    cpu=False,
    ddp_find_unused=False,
    deterministic=False,
    init_from=None,
    augment_kwargs={},  # demo: InpaintingStream's augmentation (min_crop, flips, rotations)
)

DEMO_SIZE, DEMO_BATCH = 128, 4  # with no --data: the embedded photos, small enough for a laptop CPU


def recipe_to_dict(recipe: Recipe) -> dict:
    d = dataclasses.asdict(recipe)
    d.pop("condition")  # code, not configuration: it comes with the preset
    d["losses"] = [dict(t) for t in d["losses"]]
    d["adversarial"]["stages"] = list(d["adversarial"]["stages"])
    for key in ("optim_g", "optim_d"):
        d[key]["betas"] = list(d[key]["betas"])
    return d


def recipe_from_dict(d: dict, condition=None) -> Recipe:
    try:
        d = dict(d)
        d["losses"] = tuple(LossTerm(**t) for t in d["losses"])
        adv = dict(d["adversarial"])
        adv["stages"] = tuple(adv["stages"])
        d["adversarial"] = AdversarialSpec(**adv)
        for key in ("optim_g", "optim_d"):
            opt = dict(d[key])
            opt["betas"] = tuple(opt["betas"])
            d[key] = OptimSpec(**opt)
        return Recipe(**d, condition=condition)
    except (TypeError, KeyError) as exc:
        raise ZooError(f"invalid recipe in config: {exc}") from None


def parse_value(text: str):
    """``--set`` values are YAML scalars / lists: 1e-4, true, [0.5, 0.9], name."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_set(cfg: dict, assignment: str) -> None:
    """Apply ``a.b.c=value``. Existing keys only, except inside ``*kwargs`` mappings, which take new ones."""
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ZooError(f"--set expects key=value, got {assignment!r}")
    parts = key.strip().split(".")
    node = cfg
    for depth, part in enumerate(parts):
        open_mapping = depth > 0 and parts[depth - 1].endswith("kwargs")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ZooError(f"--set {key}: {part!r} is not an index of {'.'.join(parts[:depth])}")
            part = int(part)
        elif not isinstance(node, dict) or (part not in node and not open_mapping):
            raise ZooError(f"--set {key}: no such setting {'.'.join(parts[: depth + 1])!r}")
        if depth == len(parts) - 1:
            node[part] = parse_value(value)
        else:
            node = node[part] if isinstance(node, list) or part in node else node.setdefault(part, {})


def load_yaml(path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ZooError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ZooError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ZooError(f"config file {path} must hold a mapping of settings")
    return data


def resolve_config(model=None, config_file=None, flags=None, sets=(), width=None) -> dict:
    """Merge, in increasing priority: defaults + preset recipe, config file, flags (not None), --set.

    ``width`` sets the preset's width argument (``cnum`` / ``dim``) for a smaller model of the same design.
    """
    file_cfg = load_yaml(config_file) if config_file else {}
    name = model or file_cfg.get("model")
    if name is None:
        raise ZooError("no model given: pass --model NAME (see `zoo list`)")
    preset = get_preset(name)
    cfg = {**TRAIN_DEFAULTS, "model": name, "model_kwargs": dict(preset.defaults),
           "masks": preset.recipe.masks, "mask_kwargs": dict(preset.recipe.mask_kwargs),
           "ema_kimg": preset.recipe.ema_kimg, "recipe": recipe_to_dict(preset.recipe)}
    unknown = set(file_cfg) - set(cfg) - {"warnings", "resolved"}
    if unknown:
        raise ZooError(f"config file {config_file}: unknown settings {sorted(unknown)}")
    cfg.update({k: v for k, v in file_cfg.items() if k in cfg})
    if model and file_cfg.get("model") not in (None, model):
        cfg["model"] = model
    cfg.update({key: value for key, value in (flags or {}).items() if value is not None})
    if width is not None:
        cfg["model_kwargs"] = {**cfg["model_kwargs"], preset.width_arg: width}
    for assignment in sets:
        apply_set(cfg, assignment)
    demo = cfg["data"] is None
    multiple = preset.input_multiple(cfg["model_kwargs"])
    if cfg["size"] is None:  # the demo size, rounded up to what the model takes (512 for MAT)
        cfg["size"] = -(-DEMO_SIZE // multiple) * multiple if demo else preset.native_size
    if cfg["batch_size"] is None:
        cfg["batch_size"] = DEMO_BATCH if demo else preset.recipe.batch_size
    if preset.size_arg and preset.size_arg not in cfg["model_kwargs"]:
        cfg["model_kwargs"] = {**cfg["model_kwargs"], preset.size_arg: cfg["size"]}
    if cfg["workers"] is None:
        cfg["workers"] = min(4, max(0, (os.cpu_count() or 2) // 2))
    if cfg["size"] % multiple:
        raise ZooError(f"--size {cfg['size']} is not a multiple of {multiple}, which {name} needs")
    for key in ("max_steps", "batch_size", "size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ZooError(f"{key} must be a positive integer, got {cfg[key]!r}")
    return cfg


def save_yaml(cfg: dict, path) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, path)
