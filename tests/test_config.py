"""Every setting has one home, is read by the trainer, and is checked where it is parsed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from trainers.config import SETTINGS, check_config, preflight, resolve_config, training_recipe
from zoo.errors import ZooError
from zoo.registry import Recipe, get_preset, list_models

ROOT = Path(__file__).resolve().parents[1]
FOLDED = {"batch_size", "masks", "mask_kwargs", "ema_kimg"}  # read by the trainer through training_recipe(cfg)


def leaves(node, prefix=""):
    """``(dotted key, value)`` for every leaf of a resolved config (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (dict, list)) and value:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def mutated(key: str, value, cfg: dict):
    """A different value that the setting accepts."""
    last = key.split(".")[-1]
    if key == "model":
        return next(m for m in list_models() if m != value)
    if key == "size":
        return value + get_preset(cfg["model"]).input_multiple(cfg["model_kwargs"])
    if key == "masks":
        return "box" if value != "box" else "free_form"
    if key == "tracker":
        return "none" if value != "none" else "wandb"
    if key == "recipe.discriminator":
        return "patchgan" if value != "patchgan" else "global_local"
    if last == "name":
        return "l1" if value != "l1" else "discounted_l1"
    if last in ("on", "fake"):
        return "raw" if value != "raw" else "composite"
    if last == "loss":
        return "hinge" if value != "hinge" else "rals"
    if ".betas." in key:
        return value / 2 if value else 0.5
    if ".stages." in key or last == "stage":
        return 0 if value != 0 else -1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if value is None:
        return 1.0 if key == "ema_kimg" else "somewhere"
    if value == {} or value == []:
        return {"gamma": 0.5} if value == {} else [-1]
    if isinstance(value, str):
        return value + "_x"
    raise AssertionError(f"no mutation for {key}={value!r}")


def set_key(cfg: dict, key: str, value) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(cfg))  # deep copy through the same types as config.yaml
    node, parts = cfg, key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value
    return cfg


def trainer_reads() -> set[str]:
    """Settings that trainers/trainer.py reads as ``cfg["key"]``."""
    tree = ast.parse((ROOT / "trainers" / "trainer.py").read_text())
    return {node.slice.value for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "cfg"
            and isinstance(node.slice, ast.Constant)}


@pytest.mark.parametrize("model", list_models())
def test_every_key_of_every_preset_is_read_and_changes_the_run(model):
    """Walk every leaf of the resolved config; set it to another accepted value; the trainer must see it."""
    cfg = yaml.safe_load(yaml.safe_dump(resolve_config(model, flags=dict(tracker="none", workers=0))))  # as saved
    assert not set(cfg) & set(cfg["recipe"]), "a setting with two homes"
    reads = trainer_reads()
    base = training_recipe(cfg)
    keys = list(leaves(cfg))
    assert len(keys) > 30
    for key, value in keys:
        top = key.split(".")[0]
        assert top in SETTINGS or top == "recipe", key
        new = mutated(key, value, cfg)
        changed = set_key(cfg, key, new)
        if top == "recipe" or top in FOLDED:
            after = training_recipe(changed)
            assert after != base, f"--set {key}={new!r} does not change the recipe the trainer trains with"
            assert after.condition is get_preset(model).recipe.condition  # code stays attached
        else:
            assert top in reads, f"the trainer never reads cfg[{top!r}]"
            assert changed[top] != cfg[top]


def test_the_trainer_reads_every_setting_and_the_folded_ones_only_through_the_recipe():
    reads = trainer_reads()
    assert set(SETTINGS) - FOLDED <= reads, sorted(set(SETTINGS) - FOLDED - reads)
    assert not FOLDED & reads, "read these from training_recipe(cfg), their one home in the run"
    fields = {f for f in Recipe.__dataclass_fields__}
    assert FOLDED <= fields


def test_set_of_a_key_nothing_reads_is_refused_with_the_keys_nearby():
    with pytest.raises(ZooError, match=r"recipe.masks: this setting lives at the top level: use --set masks"):
        resolve_config("deepfill_v2", sets=["recipe.masks=box"])
    with pytest.raises(ZooError, match=r"recipe.batch_size: .*--set batch_size"):
        resolve_config("deepfill_v2", sets=["recipe.batch_size=3"])
    with pytest.raises(ZooError, match=r"no such setting 'recipe.nothing'; settings in recipe: discriminator, "):
        resolve_config("deepfill_v2", sets=["recipe.nothing=1"])
    with pytest.raises(ZooError, match=r"no such setting 'colour'; settings in the top level: model, model_kwargs"):
        resolve_config("deepfill_v2", sets=["colour=red"])
    with pytest.raises(ZooError, match=r"mask_kwargs.radius: mask generator box takes no 'radius'; it takes max_"):
        resolve_config("deepfill_v2", sets=["masks=box", "mask_kwargs.radius=3"])
    with pytest.raises(ZooError, match=r"recipe.losses.0.kwargs.colour: loss l1 takes no 'colour'"):
        resolve_config("deepfill_v2", sets=["recipe.losses.0.kwargs.colour=1"])
    cfg = resolve_config("deepfill_v2", sets=["model_kwargs.colour=1"])
    from trainers.trainer import build_networks

    with pytest.raises(ZooError, match=r"setting model_kwargs: deepfill_v2 does not accept them .*colour"):
        build_networks(cfg, training_recipe(cfg))


def test_run_settings_are_used_from_their_one_home():
    cfg = resolve_config("deepfill_v2", sets=["masks=box", "batch_size=3", "ema_kimg=0.5"])
    recipe = training_recipe(cfg)
    assert (recipe.masks, recipe.batch_size, recipe.ema_kimg, recipe.mask_kwargs) == ("box", 3, 0.5, {})
    assert "masks" not in cfg["recipe"] and "batch_size" not in cfg["recipe"]
    old = {**cfg, "recipe": {**cfg["recipe"], "masks": "free_form", "batch_size": 16}}  # a config.yaml of before
    from trainers.config import migrate

    assert training_recipe(migrate(old)) == recipe


BAD = {"int": "abc", "bool": "maybe", "str": "7", "mapping": "3"}


def _bad_value(key, value):
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)) or value is None and key == "ema_kimg":
        return "abc"
    if isinstance(value, dict):
        return "3"
    return "[1, 2]"  # a list where a name or path belongs


@pytest.mark.parametrize("model", ["deepfill_v1", "mat", "hint"])
def test_every_setting_refuses_a_value_of_the_wrong_type_naming_itself(model):
    cfg = resolve_config(model, flags=dict(tracker="none", workers=0))
    checked = 0
    for key, value in leaves(cfg):
        if "kwargs." in key or key == "model":  # keyword arguments are checked against their function
            continue
        with pytest.raises(ZooError) as caught:
            resolve_config(model, flags=dict(tracker="none", workers=0), sets=[f"{key}={_bad_value(key, value)}"])
        assert key.split(".")[-1] in str(caught.value), (key, str(caught.value))
        checked += 1
    assert checked > 25


@pytest.mark.parametrize("sets, message", [
    (["seed=-1"], r"seed must be an integer in \[0, 4294967295\], got -1"),
    (["workers=-1"], r"workers must be an integer in \[0, 256\]"),
    (["save_every=0"], r"save_every must be an integer >= 1, got 0"),
    (["recipe.optim_g.lr=abc"], r"recipe.optim_g.lr must be a number > 0.0, got 'abc'"),
    (["recipe.optim_d.betas=[0.5]"], r"recipe.optim_d.betas must be two numbers in \[0, 1\)"),
    (["recipe.discriminator=nope"], r"recipe.discriminator: unknown discriminator 'nope'; known: global_local,"),
    (["recipe.adversarial.loss=nope"], r"unknown adversarial loss 'nope'; known: hinge, lsgan"),
    (["recipe.losses.0.stage=5"], r"recipe.losses.0.stage must be a stage index in \[-2, 1\]"),
    (["masks=nope"], r"masks must be a mask generator \(box, box_and_free_form"),
    (["tracker=mlflow"], r"tracker must be one of wandb, tensorboard, none"),
    (["size=100"], r"size 100 is not a multiple of 8"),
])
def test_bad_settings_name_the_setting_and_the_allowed_values(sets, message):
    with pytest.raises(ZooError, match=message):
        resolve_config("deepfill_v2", sets=sets)


def test_a_size_whose_first_layer_cannot_fit_is_refused_before_anything_is_built():
    cfg = resolve_config("deepfill_v2", flags=dict(size=100000))
    with pytest.raises(ZooError, match=r"first layer of deepfill_v2 alone needs \d+\.\d GiB, more than the"):
        preflight(cfg)
    preflight(resolve_config("deepfill_v2", flags=dict(size=256)))  # the paper's size fits


def test_check_config_accepts_a_saved_config_and_refuses_an_edited_one(tmp_path):
    cfg = resolve_config("ra", width=8)
    check_config(cfg)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cfg, "colour": 1}))
    with pytest.raises(ZooError, match=r"unknown settings \['colour'\]"):
        resolve_config(config_file=tmp_path / "c.yaml")


def test_every_registry_raises_the_same_error_for_unknown_and_duplicate_names():
    import numpy as np

    import discriminators
    from data.masks import make_mask, register_mask
    from losses import GeneratorLoss
    from losses.adversarial import d_loss
    from zoo.errors import DuplicateNameError, UnknownNameError
    from zoo.registry import LossTerm, create_model, register_model

    unknown = [lambda: create_model("nope"), lambda: discriminators.create_discriminator("nope"),
               lambda: make_mask("nope", np.random.default_rng(0), 8, 8), lambda: d_loss("nope", None, None),
               lambda: GeneratorLoss([LossTerm("nope")])]
    for call in unknown:
        with pytest.raises(UnknownNameError, match=r"unknown .*'nope'; known: "):
            call()
    import dataclasses

    preset = get_preset("deepfill_v2")
    fields = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name not in ("name", "factory")}
    duplicates = [lambda: register_model("deepfill_v2", **fields)(lambda: None),
                  lambda: discriminators.register_discriminator("patchgan")(lambda: None),
                  lambda: register_mask("box")(lambda: None)]
    for call in duplicates:
        with pytest.raises(DuplicateNameError, match="is registered twice"):
            call()
