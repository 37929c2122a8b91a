"""The resolved training configuration: preset recipe + config file + command-line flags + ``--set`` overrides.

A run directory stores the resolved config as ``config.yaml``; passing it back with ``--config`` reproduces
the run. Every setting has one home: the run settings at the top (``SETTINGS`` below, e.g. ``batch_size``,
``masks``, ``ema_kimg``) and, under ``recipe``, how the preset's paper trains the networks (discriminator,
losses, adversarial loss, optimisers), so ``--set recipe.optim_g.lr=2e-4`` or
``--set recipe.adversarial.weight=0.1`` change one number without touching code.

Everything is checked here, where it is parsed, before anything is written: each error names the setting
and what it accepts.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import inspect
import math
import os
from pathlib import Path

import yaml

from zoo.errors import DiskFullError, UnknownNameError, ZooError
from zoo.registry import LR_SCHEDULES, AdversarialSpec, LossTerm, OptimSpec, Preset, Recipe, get_preset

TRACKERS = ("wandb", "tensorboard", "none")
DEMO_SIZE, DEMO_BATCH = 128, 4  # with no --data: the embedded photos, small enough for a laptop CPU


# ---- what each setting accepts ----------------------------------------------------------------------------

def _int(low: int, high: int | None = None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise ValueError(f"an integer {'>= ' + str(low) if high is None else f'in [{low}, {high}]'}")
    return check


def _number(low: float = 0.0, strict: bool = False, optional: bool = False):
    def check(v):
        if v is None and optional:
            return
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < low or (strict and v == low):
            raise ValueError(f"a number {'>' if strict else '>='} {low}" + (" or null" if optional else ""))
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("true or false")


def _text(optional: bool = True):
    def check(v):
        if not (isinstance(v, str) and v) and not (optional and v is None):
            raise ValueError("a non-empty string" + (" or null" if optional else ""))
    return check


def _mapping(v):
    if not isinstance(v, dict):
        raise ValueError("a mapping of keyword arguments, e.g. {cnum: 16}")


def _choice(*names):
    def check(v):
        if v not in names:
            raise ValueError(f"one of {', '.join(names)}")
    return check


def _masks(v):
    from data.masks import MASK_GENERATORS

    if not isinstance(v, str) or v not in MASK_GENERATORS:
        raise ValueError(f"a mask generator ({', '.join(sorted(MASK_GENERATORS))})")


COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")


def _compile(v):
    if not isinstance(v, bool) and v not in COMPILE_BACKENDS:
        raise ValueError(f"true, false or a torch.compile backend ({', '.join(COMPILE_BACKENDS)})")


def _init_options(v):
    if not isinstance(v, dict) or set(v) - {"discriminator", "optimizers"} or not all(
            isinstance(x, bool) for x in v.values()):
        raise ValueError("a mapping {discriminator: true|false, optimizers: true|false}")


def _prefixes(v):
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError("a list of parameter-name prefixes, e.g. [mapping, encoder.]")


# Every run setting, its default (``None`` = derived at resolve time) and what it accepts. A setting that
# is here is read by the trainer; tests/test_config.py proves it for every one.
SETTINGS = {
    "model": (None, _text(optional=False)),
    "model_kwargs": ({}, _mapping),
    "data": (None, _text()),
    "size": (None, _int(1)),
    "batch_size": (None, _int(1)),
    "max_steps": (2000, _int(1)),
    "seed": (0, _int(0, 2**32 - 1)),
    "out": (None, _text()),
    "workers": (None, _int(0, 256)),
    "log_every": (10, _int(1)),
    "sample_every": (200, _int(1)),
    "save_every": (500, _int(1)),
    "keep_checkpoints": (2, _int(0)),  # 0 keeps every checkpoint
    "preview_count": (4, _int(1, 64)),
    "tracker": ("wandb", _choice(*TRACKERS)),
    "weights_dir": (None, _text()),
    "allow_random_vgg": (True, _bool),
    "masks": (None, _masks),
    "mask_kwargs": ({}, _mapping),
    "augment_kwargs": ({}, _mapping),  # the training stream's augmentation (min_crop, flips, rotations, augment)
    # EMA of G: half-life in thousands of images (StyleGAN2 convention), null = no EMA.
    "ema_kimg": (None, _number(0.0, strict=True, optional=True)),
    "cpu": (False, _bool),
    "ddp_find_unused": (False, _bool),
    "deterministic": (False, _bool),
    "init_from": (None, _text()),
    "compile": (False, _compile),  # torch.compile G and D (opt-in: compiling costs minutes up front)
    # --init-from: also load the source's discriminator; restore both optimisers (zoo checkpoints only)
    "init": ({"discriminator": True, "optimizers": False}, _init_options),
    "freeze": ([], _prefixes),  # generator parameter-name prefixes kept fixed while fine-tuning
}
TRAIN_DEFAULTS = {key: default for key, (default, _) in SETTINGS.items()}
# Written into config.yaml by the trainer, not settings: accepted back from a config file and ignored.
RECORDS = ("warnings", "initialised_from")

# The recipe keys of the config and what each accepts; the rest of ``Recipe`` is run settings above.
RECIPE_KEYS = ("discriminator", "discriminator_kwargs", "losses", "adversarial", "optim_g", "optim_d")
MOVED = {f"recipe.{key}": key for key in ("batch_size", "masks", "mask_kwargs", "ema_kimg")}
LOSS_TERM_CHECKS = {"name": None, "weight": _number(), "stage": None, "on": _choice("raw", "composite"),
                    "kwargs": _mapping}
ADVERSARIAL_CHECKS = {"loss": None, "weight": _number(), "fake": _choice("composite", "raw"), "stages": None,
                      "d_steps": _int(1, 100), "gp_weight": _number(), "gp_hole_only": _bool,
                      "r1_gamma": _number(), "r1_interval": _int(1), "warmup_steps": _int(0)}
OPTIM_CHECKS = {"lr": _number(0.0, strict=True), "betas": None, "eps": _number(0.0, strict=True),
                "weight_decay": _number(), "schedule": _choice(*LR_SCHEDULES), "warmup_steps": _int(0),
                "schedule_steps": _int(0)}


# ---- recipe <-> config ------------------------------------------------------------------------------------

def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe part of a config: the keys of ``RECIPE_KEYS``, as plain YAML types."""
    d = {key: dataclasses.asdict(recipe)[key] for key in RECIPE_KEYS}
    d["losses"] = [dict(t) for t in d["losses"]]
    d["adversarial"]["stages"] = list(d["adversarial"]["stages"])
    for key in ("optim_g", "optim_d"):
        d[key]["betas"] = list(d[key]["betas"])
    return d


def training_recipe(cfg: dict) -> Recipe:
    """The preset's own ``Recipe`` with the config's settings applied: the one object the trainer reads.

    Built on the preset's recipe (``dataclasses.replace``), so code that is not configuration (``condition``,
    e.g. MHTMA's sketch) stays attached, and run settings (batch size, masks, EMA) come from their one home.
    """
    r = cfg["recipe"]
    return dataclasses.replace(
        get_preset(cfg["model"]).recipe,
        discriminator=r["discriminator"],
        discriminator_kwargs=dict(r["discriminator_kwargs"]),
        losses=tuple(LossTerm(**t) for t in r["losses"]),
        adversarial=AdversarialSpec(**{**r["adversarial"], "stages": tuple(r["adversarial"]["stages"])}),
        optim_g=OptimSpec(**{**r["optim_g"], "betas": tuple(r["optim_g"]["betas"])}),
        optim_d=OptimSpec(**{**r["optim_d"], "betas": tuple(r["optim_d"]["betas"])}),
        batch_size=cfg["batch_size"], masks=cfg["masks"], mask_kwargs=dict(cfg["mask_kwargs"]),
        ema_kimg=cfg["ema_kimg"],
    )


def migrate(cfg: dict) -> dict:
    """Configs written before each setting had one home kept copies in ``recipe`` that nothing read."""
    if isinstance(cfg.get("recipe"), dict) and any(key in cfg for key in ("masks", "batch_size")):
        cfg = {**cfg, "recipe": {k: v for k, v in cfg["recipe"].items() if f"recipe.{k}" not in MOVED}}
    return cfg


# ---- --set -------------------------------------------------------------------------------------------------

def parse_value(text: str):
    """``--set`` values are YAML scalars / lists: 1e-4, true, [0.5, 0.9], name."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _keys_here(node) -> str:
    if isinstance(node, list):
        return f"indices 0..{len(node) - 1}"
    return ", ".join(str(k) for k in node)


def apply_set(cfg: dict, assignment: str) -> None:
    """Apply ``a.b.c=value``. Existing keys only, except inside ``*kwargs`` mappings, which take new ones
    (checked against what the model, discriminator, mask generator or loss accepts by ``check_config``)."""
    key, sep, value = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ZooError(f"--set expects key=value, got {assignment!r}")
    if key in MOVED:
        raise ZooError(f"--set {key}: this setting lives at the top level: use --set {MOVED[key]}=...")
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the top level"
        open_mapping = depth > 0 and parts[depth - 1].endswith("kwargs")
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise ZooError(f"--set {key}: {part!r} is not an index of {here} ({_keys_here(node)})")
            part = int(part)
        elif not isinstance(node, dict):
            raise ZooError(f"--set {key}: {here} is a value, not a group of settings")
        elif part not in node and not open_mapping:
            raise ZooError(f"--set {key}: no such setting {'.'.join(parts[: depth + 1])!r}; settings in {here}: "
                           f"{_keys_here(node)}")
        if depth == len(parts) - 1:
            node[part] = parse_value(value)
        else:
            node = node[part] if isinstance(node, list) or part in node else node.setdefault(part, {})


# ---- files -------------------------------------------------------------------------------------------------

def load_yaml(path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise ZooError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ZooError(f"config file {path} is a directory") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ZooError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ZooError(f"config file {path} must hold a mapping of settings")
    return data


def save_yaml(cfg: dict, path) -> None:
    """Write ``cfg`` atomically (temp file + rename); a full disk is one clear error, never a partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on device writing {path}") from None
        raise ZooError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---- resolve and check -------------------------------------------------------------------------------------

def resolve_config(model=None, config_file=None, flags=None, sets=(), width=None) -> dict:
    """Merge, in increasing priority: defaults + preset recipe, config file, flags (not None), --set.

    ``width`` sets the preset's width argument (``cnum`` / ``dim``) for a smaller model of the same design.
    """
    file_cfg = migrate(load_yaml(config_file)) if config_file else {}
    name = model or file_cfg.get("model")
    if name is None:
        raise ZooError("no model given: pass --model NAME (see `zoo list`)")
    preset = get_preset(name)
    cfg = {**copy.deepcopy(TRAIN_DEFAULTS), "model": name,
           "model_kwargs": {**preset.defaults, **preset.recipe.train_model_kwargs},  # e.g. activation checkpointing
           "masks": preset.recipe.masks, "mask_kwargs": dict(preset.recipe.mask_kwargs),
           "ema_kimg": preset.recipe.ema_kimg,
           "recipe": recipe_to_dict(preset.recipe)}
    unknown = set(file_cfg) - set(cfg) - set(RECORDS)
    if unknown:
        raise ZooError(f"config file {config_file}: unknown settings {sorted(unknown)}; settings: {', '.join(cfg)}")
    cfg.update({k: v for k, v in file_cfg.items() if k in cfg})
    if model and file_cfg.get("model") not in (None, model):
        cfg["model"] = model
    cfg.update({key: value for key, value in (flags or {}).items() if value is not None})
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ZooError(f"--width must be a positive integer (the base width {preset.width_arg} of {name}), "
                           f"got {width!r}")
        cfg["model_kwargs"] = {**cfg["model_kwargs"], preset.width_arg: width}
    for assignment in sets:
        apply_set(cfg, assignment)
    if cfg["masks"] != preset.recipe.masks and cfg["mask_kwargs"] == dict(preset.recipe.mask_kwargs):
        cfg["mask_kwargs"] = {}  # another generator: the preset's arguments were for its own
    check_value(cfg, "model_kwargs")
    demo = cfg["data"] is None
    multiple = preset.input_multiple(cfg["model_kwargs"])
    if cfg["size"] is None:  # the demo size, rounded up to what the model takes (512 for MAT)
        cfg["size"] = -(-DEMO_SIZE // multiple) * multiple if demo else preset.native_size
    if cfg["batch_size"] is None:
        cfg["batch_size"] = DEMO_BATCH if demo else preset.recipe.batch_size
    check_value(cfg, "size")
    if preset.size_arg and preset.size_arg not in cfg["model_kwargs"]:
        cfg["model_kwargs"] = {**cfg["model_kwargs"], preset.size_arg: cfg["size"]}
    if cfg["workers"] is None:
        cfg["workers"] = min(4, max(0, (os.cpu_count() or 2) // 2))
    check_config(cfg)
    return cfg


def check_value(cfg: dict, key: str) -> None:
    try:
        SETTINGS[key][1](cfg[key])
    except ValueError as exc:
        raise ZooError(f"setting {key} must be {exc}, got {cfg[key]!r}") from None


def check_config(cfg: dict) -> None:
    """Raise ``ZooError`` naming the first setting that is missing, unknown or out of range."""
    unknown = sorted(set(cfg) - set(SETTINGS) - {"recipe"} - set(RECORDS))
    if unknown:
        raise ZooError(f"unknown setting {unknown[0]!r}; settings: {', '.join([*SETTINGS, 'recipe'])}")
    missing = [key for key in [*SETTINGS, "recipe"] if key not in cfg]
    if missing:
        raise ZooError(f"the config lacks setting {missing[0]!r}")
    for key in SETTINGS:
        check_value(cfg, key)
    if not cfg["init_from"] and (cfg["freeze"] or cfg["init"] != SETTINGS["init"][0]):
        raise ZooError("settings init and freeze apply when fine-tuning: pass --init-from SOURCE")
    preset = get_preset(cfg["model"])
    multiple = preset.input_multiple(cfg["model_kwargs"])
    if cfg["size"] % multiple:
        raise ZooError(f"setting size {cfg['size']} is not a multiple of {multiple}, which {cfg['model']} needs")
    from data.masks import MASK_GENERATORS

    _check_kwargs("mask_kwargs", cfg["mask_kwargs"], MASK_GENERATORS[cfg["masks"]], f"mask generator {cfg['masks']}",
                  skip=3)
    from data.datasets import InpaintingStream

    _check_kwargs("augment_kwargs", cfg["augment_kwargs"], InpaintingStream.__init__, "the training stream", skip=7)
    _check_recipe(cfg["recipe"], preset)


def _check_kwargs(key: str, kwargs: dict, fn, what: str, skip: int = 0) -> None:
    """Keyword arguments that ``fn`` does not take (after its first ``skip`` positional ones) are refused."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return  # checked when the object is built (see trainers.preflight)
    names = [p.name for p in params]
    for name in kwargs:
        if name not in names:
            raise ZooError(f"setting {key}.{name}: {what} takes no {name!r}; it takes {', '.join(names) or 'none'}")


def _check_group(prefix: str, node, checks: dict) -> None:
    if not isinstance(node, dict):
        raise ZooError(f"setting {prefix} must be a mapping with keys {', '.join(checks)}, got {node!r}")
    for key in node:
        if key not in checks:
            raise ZooError(f"unknown setting {prefix}.{key}; settings in {prefix}: {', '.join(checks)}")
    for key, check in checks.items():
        if key in node and check is not None:
            try:
                check(node[key])
            except ValueError as exc:
                raise ZooError(f"setting {prefix}.{key} must be {exc}, got {node[key]!r}") from None


def _check_stage(key: str, stage, num_stages: int) -> None:
    if isinstance(stage, bool) or not isinstance(stage, int) or not -num_stages <= stage < num_stages:
        raise ZooError(f"setting {key} must be a stage index in [{-num_stages}, {num_stages - 1}] "
                       f"(0 = coarse, -1 = final), got {stage!r}")


def _unknown(key: str, kind: str, name, known) -> ZooError:
    return ZooError(f"setting {key}: {UnknownNameError(kind, name, known)}")


def _check_recipe(recipe, preset: Preset) -> None:
    import discriminators
    from losses import FEATURE_DEFAULTS, PIXEL_LOSSES, RECONSTRUCTION_LOSSES
    from losses.adversarial import D_LOSSES

    if not isinstance(recipe, dict):
        raise ZooError(f"setting recipe must be a mapping with keys {', '.join(RECIPE_KEYS)}")
    for key in recipe:
        if key not in RECIPE_KEYS:
            hint = f" (it is set as {MOVED['recipe.' + key]})" if f"recipe.{key}" in MOVED else ""
            raise ZooError(f"unknown setting recipe.{key}{hint}; settings in recipe: {', '.join(RECIPE_KEYS)}")
    missing = [key for key in RECIPE_KEYS if key not in recipe]
    if missing:
        raise ZooError(f"the config lacks setting recipe.{missing[0]}")
    if recipe["discriminator"] not in discriminators.list_discriminators():
        raise _unknown("recipe.discriminator", "discriminator", recipe["discriminator"],
                       discriminators.list_discriminators())
    if not isinstance(recipe["discriminator_kwargs"], dict):
        raise ZooError("setting recipe.discriminator_kwargs must be a mapping of keyword arguments")
    if not isinstance(recipe["losses"], list) or not recipe["losses"]:
        raise ZooError("setting recipe.losses must be a non-empty list of loss terms")
    for i, term in enumerate(recipe["losses"]):
        key = f"recipe.losses.{i}"
        _check_group(key, term, LOSS_TERM_CHECKS)
        if term.get("name") not in RECONSTRUCTION_LOSSES:
            raise _unknown(f"{key}.name", "loss", term.get("name"), RECONSTRUCTION_LOSSES)
        _check_stage(f"{key}.stage", term.get("stage", -1), preset.num_stages)
        kwargs = term.get("kwargs", {})
        if term["name"] in PIXEL_LOSSES:
            _check_kwargs(f"{key}.kwargs", kwargs, PIXEL_LOSSES[term["name"]], f"loss {term['name']}", skip=3)
        else:
            for name in kwargs:
                if name not in FEATURE_DEFAULTS:
                    raise ZooError(f"setting {key}.kwargs.{name}: loss {term['name']} takes no {name!r}; it takes "
                                   f"{', '.join(FEATURE_DEFAULTS)}")
    adv = recipe["adversarial"]
    _check_group("recipe.adversarial", adv, ADVERSARIAL_CHECKS)
    if adv.get("loss", "hinge") not in list(D_LOSSES):
        raise _unknown("recipe.adversarial.loss", "adversarial loss", adv["loss"], D_LOSSES)
    stages = adv.get("stages", [-1])
    if not isinstance(stages, list) or not stages:
        raise ZooError(f"setting recipe.adversarial.stages must be a non-empty list of stage indices, got {stages!r}")
    for stage in stages:
        _check_stage("recipe.adversarial.stages", stage, preset.num_stages)
    for key in ("optim_g", "optim_d"):
        _check_group(f"recipe.{key}", recipe[key], OPTIM_CHECKS)
        betas = recipe[key].get("betas", [0.5, 0.999])
        if (not isinstance(betas, list) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise ZooError(f"setting recipe.{key}.betas must be two numbers in [0, 1), e.g. [0.5, 0.999], "
                           f"got {betas!r}")


def preflight(cfg: dict) -> None:
    """Refuse a size whose first layer's activations alone would not fit in memory (batch x width x size^2
    float32, the width argument standing for the first layer's channels), before anything is allocated."""
    preset = get_preset(cfg["model"])
    width = cfg["model_kwargs"].get(preset.width_arg, 1)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ZooError(f"setting model_kwargs.{preset.width_arg} must be a positive integer, got {width!r}")
    needed = cfg["batch_size"] * width * cfg["size"] ** 2 * 4
    available, where = _memory(cfg)
    if needed > available:
        raise ZooError(f"setting size {cfg['size']} (batch {cfg['batch_size']}): the first layer of {cfg['model']} "
                       f"alone needs {needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of {where}; "
                       "use a smaller --size or --batch-size")


def _memory(cfg) -> tuple[int, str]:
    import torch

    if not cfg["cpu"] and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory on this machine"
