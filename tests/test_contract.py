"""The generator contract of DESIGN.md, checked for every registered preset at its tiny width."""

import json
import math

import pytest
import torch

import discriminators
import zoo
from losses import RECONSTRUCTION_LOSSES
from losses.adversarial import D_LOSSES
from tests.helpers import random_batch
from trainers.checkpoint import read_checkpoint
from trainers.steps import GANSteps

PRESETS = zoo.list_models()


def smooth_image(image):
    """Noise blurred into blobs with edges: natural-looking enough for edge detectors."""
    blurred = torch.nn.functional.avg_pool2d(image, 9, stride=1, padding=4)
    return (blurred * 6).clamp(-1, 1)


def tiny(name):
    preset = zoo.get_preset(name)
    torch.manual_seed(0)
    return preset, zoo.create_model(name, **preset.tiny).eval()


def run(model, steps, image, mask):
    with torch.no_grad():
        torch.manual_seed(123)  # stochastic generators (MAT) draw the same noise in both calls
        return steps.generate(image, mask, model)


def fixed_conditioning(preset, image, mask):
    """The recipe with its per-batch conditioning (e.g. a sketch drawn from the ground truth, which sees
    the hole by design, like a user's drawing) computed once and held fixed."""
    recipe = preset.recipe
    if recipe.condition is None:
        return recipe, {}
    cond = recipe.condition(image, mask)
    return zoo.registry.replace_recipe(recipe, condition=lambda *_: cond), cond


@pytest.mark.parametrize("name", PRESETS)
def test_output_contract(name):
    preset, G = tiny(name)
    image, mask = random_batch(size=preset.tiny_size)
    out = run(G, GANSteps(None, G, None, None, None, None, preset.recipe), image, mask)
    assert isinstance(out, zoo.InpaintOutput)
    assert len(out.stages) == preset.num_stages
    assert out.final is out.stages[-1]
    for stage in out.stages:
        assert stage.shape == image.shape
        assert stage.dtype == torch.float32
        assert torch.isfinite(stage).all()
        assert stage.min() >= -1 and stage.max() <= 1
    assert isinstance(out.aux, dict)


@pytest.mark.parametrize("name", PRESETS)
def test_hole_pixels_never_influence_any_output(name):
    """Through the trainer's and the inference API's call path, hole content changes nothing."""
    preset, G = tiny(name)
    image, mask = random_batch(size=preset.tiny_size)
    image = smooth_image(image)  # structure, so that edge-based conditioning (sketches) is not empty
    other = image + mask * (torch.rand_like(image) * 2 - 1 - image)  # new hole content, same known pixels
    assert not torch.equal(image, other)
    recipe, cond = fixed_conditioning(preset, image, mask)
    steps = GANSteps(None, G, None, None, None, None, recipe)
    a, b = run(G, steps, image, mask), run(G, steps, other, mask)
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa, sb)
    assert a.aux.keys() == b.aux.keys()
    for key in a.aux:
        if torch.is_tensor(a.aux[key]):
            assert torch.equal(a.aux[key], b.aux[key]), key
    torch.manual_seed(5)
    x = zoo.inpaint(G, image, mask, **cond)
    torch.manual_seed(5)
    y = zoo.inpaint(G, other, mask, **cond)
    assert torch.equal(x * mask, y * mask)
    # outside the hole the composite is exactly the input
    assert torch.equal(x * (1 - mask), image * (1 - mask))


@pytest.mark.parametrize("name", PRESETS)
def test_at_init_every_stage_fills_the_hole_from_the_known_pixels(name):
    """A freshly built generator's hole fill depends on the known pixels, not only on its biases. With PyTorch's
    default init the gated DeepFill / MHTMA stacks passed on ~1e-9 of the input: training first learned a flat
    colour (the demo's flat fills)."""
    preset, G = tiny(name)
    image, mask = random_batch(size=preset.tiny_size)
    image = smooth_image(image)
    other = smooth_image(torch.roll(image, 7, dims=-1).flip(0))  # other known pixels, same holes
    recipe, _ = fixed_conditioning(preset, image, mask)
    steps = GANSteps(None, G, None, None, None, None, recipe)
    a, b = run(G, steps, image, mask), run(G, steps, other, mask)
    for stage_a, stage_b in zip(a.stages, b.stages):
        change_in_hole = ((stage_a - stage_b).abs() * mask).sum() / (3 * mask.sum())
        assert change_in_hole > 5e-3, f"hole fill barely depends on the input ({change_in_hole:.2g})"


@pytest.mark.parametrize("name", PRESETS)
def test_recipe_is_complete(name):
    preset = zoo.get_preset(name)
    recipe = preset.recipe
    assert recipe.discriminator in discriminators.list_discriminators()
    assert recipe.adversarial.loss in D_LOSSES
    assert all(t.name in RECONSTRUCTION_LOSSES for t in recipe.losses)
    assert all(-preset.num_stages <= t.stage < preset.num_stages for t in recipe.losses)
    assert all(-preset.num_stages <= s < preset.num_stages for s in recipe.adversarial.stages)
    assert recipe.optim_g.lr > 0 and recipe.optim_d.lr > 0 and recipe.adversarial.d_steps >= 1
    assert preset.native_size % preset.size_multiple == 0
    assert preset.tiny_size % preset.input_multiple(preset.tiny) == 0
    assert preset.width_arg in preset.defaults
    D = discriminators.create_discriminator(recipe.discriminator, image_size=preset.tiny_size,
                                            **recipe.discriminator_kwargs)
    image, mask = random_batch(size=preset.tiny_size)
    logits = D(image, mask, *[image] * (len(recipe.adversarial.stages) - 1))
    for head in logits if isinstance(logits, tuple) else (logits,):
        assert head.shape[0] == image.shape[0] and torch.isfinite(head).all()


@pytest.mark.parametrize("name", PRESETS)
def test_recorded_parameter_count_is_the_built_one(name):
    """``zoo list`` prints ``num_params`` without building the model: it must be what building gives."""
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert zoo.get_preset(name).num_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PRESETS)
def test_inpaint_pads_any_size(name):
    preset, G = tiny(name)
    multiple = preset.input_multiple(preset.tiny)
    if multiple >= preset.tiny_size:
        pytest.skip("only multiples of the tiny size are valid")
    size = preset.tiny_size + multiple // 2 + 1
    image, mask = random_batch(n=1, size=size)
    image = image[..., : size - 3]  # non-square and off-multiple in both sides
    mask = mask[..., : size - 3]
    result = zoo.inpaint(G, image, mask)
    assert result.shape == image.shape
    assert torch.equal(result * (1 - mask), image * (1 - mask))


# Narrow discriminators of the same designs, so that every preset trains in seconds.
TINY_DISCRIMINATORS = {"patchgan": {"cnum": 8}, "global_local": {"cnum": 2, "fc_width": 16},
                       "stylegan": {"channel_max": 16}}


@pytest.mark.parametrize("name", PRESETS)
def test_trains_two_steps_through_the_trainer(name, tmp_path, monkeypatch):
    """Every preset, at its tiny width, trains through the one trainer with its own recipe: the recipe's loss
    terms and penalties are logged and finite, D takes the recipe's critic steps, G's weights move, and the
    checkpoint loads back into the preset."""
    from losses import term_names
    from trainers.config import resolve_config
    from trainers.samples import aux_scalars
    from trainers.trainer import train

    preset = zoo.get_preset(name)
    recipe = preset.recipe
    calls = {"D": 0, "G": 0}
    initial = {}

    def count(method, key):
        def wrapped(self, *args, **kwargs):
            if key == "G" and not calls["G"]:
                initial.update({k: v.detach().clone() for k, v in self.G.named_parameters() if v.requires_grad})
            calls[key] += 1
            return method(self, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(GANSteps, "discriminator", count(GANSteps.discriminator, "D"))
    monkeypatch.setattr(GANSteps, "generator", count(GANSteps.generator, "G"))
    sets = ["log_every=1", "save_every=2", "sample_every=2", "preview_count=2"]
    sets += [f"recipe.discriminator_kwargs.{k}={v}" for k, v in TINY_DISCRIMINATORS.get(recipe.discriminator,
                                                                                         {}).items()]
    flags = dict(size=preset.tiny_size, batch_size=2, max_steps=2, out=str(tmp_path / "run"), workers=0,
                 tracker="none", cpu=True)
    sets += [f"model_kwargs.{k}={json.dumps(v)}" for k, v in preset.tiny.items()]  # tuples as YAML lists
    run = train(resolve_config(name, flags=flags, sets=sets))

    assert calls == {"D": 2 * recipe.adversarial.d_steps, "G": 2}
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [1, 2]
    expected = {f"G/{t}" for t in term_names(recipe.losses)} | {"G/loss", "G/adv", "D/loss"}
    if recipe.adversarial.loss == "wgan_gp":
        expected.add("D/gp")
    for entry in logs:
        assert expected <= set(entry), expected - set(entry)
        assert all(math.isfinite(v) for v in entry.values() if isinstance(v, float))
    if recipe.adversarial.r1_gamma:  # lazy R1 on D update 0, then every r1_interval updates
        assert "D/r1" in logs[0] and ("D/r1" in logs[1]) == (recipe.adversarial.r1_interval <= 2)

    state = read_checkpoint(run)
    fresh = zoo.create_model(name, **preset.tiny)
    assert state["G"].keys() == fresh.state_dict().keys()
    assert (state["G_ema"] is not None) == bool(recipe.ema_kimg)
    # The optimiser steps G: nearly every weight moves (a few may not at a tiny width, e.g. a dead ReLU unit).
    moved = [k for k, v in initial.items() if not torch.equal(v, state["G"][k].to(v.device))]
    assert len(initial) == sum(p.requires_grad for p in fresh.parameters())
    assert len(moved) >= 0.75 * len(initial), sorted(set(initial) - set(moved))
    assert list((run / "samples").glob("*.png"))
    G = zoo.load(name, checkpoint=sorted((run / "checkpoints").glob("*.pt"))[-1], **preset.tiny)
    image, mask = random_batch(size=preset.tiny_size)
    conditioning = recipe.condition(image, mask) if recipe.condition else {}
    completed = zoo.inpaint(G, image, mask, **conditioning)
    assert torch.isfinite(completed).all() and torch.equal(completed * (1 - mask), image * (1 - mask))
    with torch.no_grad():  # the generator's per-image extras (attention temperatures, ...) are logged
        aux = aux_scalars(G(image * (1 - mask), mask, **conditioning))
    assert {k for k in logs[-1] if k.startswith("aux/")} == set(aux)
