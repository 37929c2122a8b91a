"""The import direction: the shared ground loads no model family, torchvision or timm; the CLI answers without
torch; one family does not drag in the others; the trainer names no family.

Each check runs in a fresh interpreter, since ``sys.modules`` of the test process already holds everything.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.registry import FAMILIES, get_preset, list_models

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("zoo", "trainers", "losses", "discriminators", "data", "tools")
HEAVY = ("torch", "torchvision", "timm", "accelerate")


def loaded_after(code: str) -> set[str]:
    """Top-level packages and first-party modules in ``sys.modules`` after running ``code`` in a new process."""
    probe = (f"import sys, json\n{code}\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             f"{FIRST_PARTY + HEAVY!r} and (m.split('.')[0] in {FIRST_PARTY!r} or '.' not in m))))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def family_modules(modules) -> set[str]:
    return set(modules) & set(FAMILIES)


def test_mask_generators_load_only_the_errors():
    assert loaded_after("import data.masks") == {"data", "data.masks", "zoo", "zoo.errors"}


def test_ground_loads_no_family_torchvision_or_timm():
    modules = loaded_after("import zoo, zoo.errors, zoo.contract, zoo.weights, zoo.registry, data.images, "
                           "data.mask_sets")
    assert not family_modules(modules), modules
    assert {"torchvision", "timm", "accelerate"}.isdisjoint(modules)
    assert "torch" in modules  # the contract and the weights resolver are torch code; the point is what is not


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["compare", "--help"]])
def test_cli_help_imports_no_torch(argv):
    modules = loaded_after(f"from zoo.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert "zoo.cli" in modules
    assert "torch" not in modules and not family_modules(modules)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_family_imports_no_other(family):
    modules = loaded_after(f"import {family}")
    uses = {"zoo.mhtma": {"zoo.deepfill"}}.get(family, set())  # MHTMA builds on DeepFill's layer tables
    assert family_modules(modules) == {family} | uses
    assert {"torchvision", "timm"}.isdisjoint(modules)


def test_loading_a_model_imports_only_its_family():
    modules = loaded_after("import zoo\nzoo.load('deepfill_v2')")
    assert family_modules(modules) == {"zoo.deepfill"}
    assert {"torchvision", "timm", "accelerate"}.isdisjoint(modules)


def test_deepfill_inference_does_not_load_the_compiler():
    """torch._dynamo costs ~150 MB of memory and seconds of import; only torch.compile should bring it in."""
    probe = ("import sys, torch, zoo\nmodel = zoo.load('deepfill_v2', cnum=8).eval()\n"
             "model.attention_flow = False  # the offset image comes from torchvision, which loads torch._dynamo\n"
             "with torch.no_grad():\n"
             "    model(torch.zeros(1, 3, 64, 64), torch.ones(1, 1, 64, 64))\nprint('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_trainer_imports_no_family():
    """No family branches in the trainer: importing all of it (and evaluation) loads no family module."""
    modules = loaded_after("import trainers.trainer, trainers.config, trainers.steps, trainers.samples, "
                           "trainers.checkpoint, trainers.metrics, trainers.evaluation, losses, discriminators")
    assert "trainers.trainer" in modules and "trainers.evaluation.loop" in modules
    assert not family_modules(modules), family_modules(modules)


def test_family_table_matches_the_registrations():
    """The registry's lazy table names, for each family module, exactly the presets it registers."""
    registered = {}
    for name in list_models():
        registered.setdefault(get_preset(name).factory.__module__, set()).add(name)
    assert registered == {module: set(names) for module, names in FAMILIES.items()}
