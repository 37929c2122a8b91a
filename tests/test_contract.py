"""The generator contract of DESIGN.md, checked for every registered preset at its tiny width."""

import pytest
import torch

import discriminators
import zoo
from losses import RECONSTRUCTION_LOSSES
from losses.adversarial import D_LOSSES
from tests.conftest import random_batch
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
