"""MHTMA: parameter counts, the attention module's invariants, the generator, the sketch pipeline."""


import numpy as np
import pytest
import torch
from skimage import draw, measure
from skimage.morphology import skeletonize

import discriminators
import zoo
from tests.helpers import count_parameters, random_batch
from zoo.errors import InputSizeError, ZooError
from zoo.mhtma import (
    MultiHeadTemperatureMaskedAttention,
    TemperatureNet,
    make_sketch,
    sketch_condition,
    sketch_from_drawing,
    sketch_steps,
)


def tiny(name="mhtma"):
    torch.manual_seed(0)
    return zoo.create_model(name, **zoo.get_preset(name).tiny).eval()


# ---- parameter counts at the paper's width (reference/mhtma.md §8) ----


def test_parameter_counts_match_the_spec():
    with torch.device("meta"):
        G = zoo.create_model("mhtma")
        G_sketch = zoo.create_model("mhtma_sketch")
        recipe = zoo.get_preset("mhtma").recipe
        D = discriminators.create_discriminator(recipe.discriminator, image_size=256, **recipe.discriminator_kwargs)
    assert count_parameters(G) == 4_063_312
    assert count_parameters(G.coarse) == 1_629_951
    assert count_parameters(G) - count_parameters(G.coarse) == 2_433_361  # refinement network
    assert count_parameters(G.conv_branch) == 991_200
    assert count_parameters(G.attention_in) == 451_392
    assert count_parameters(G.attention) == 175_714 and count_parameters(G.attention.temperature) == 166_402
    assert count_parameters(G.attention_out) == 332_160
    assert count_parameters(G.decoder) == 482_895
    assert count_parameters(G_sketch) == 4_066_912
    assert count_parameters(G_sketch.coarse) == 1_631_151  # = DeepFill v2 stage 1 (5-channel input): a layer-list check
    assert count_parameters(D) == 45_056_769
    assert count_parameters(D.global_critic) == 25_804_416 and count_parameters(D.local_critic) == 19_250_304


# ---- the MHTMA module ----


def module(channels=8, heads=2, **kwargs):
    torch.manual_seed(0)
    return MultiHeadTemperatureMaskedAttention(channels, heads, temperature_width=8, **kwargs).eval()


def test_temperatures_are_always_positive():
    torch.manual_seed(0)
    net = TemperatureNet(8, heads=2, width=8)
    x = torch.randn(5, 8, 16, 12) * torch.tensor([1e-3, 1, 10, 100, 1e4]).view(5, 1, 1, 1)
    tau = net(x)
    assert tau.shape == (5, 2)
    assert (tau > 0).all()
    with torch.no_grad():
        net.fc.bias.fill_(-1e4)  # pre-activation far below zero: Softplus underflows to 0 in fp32
    tau = net(x)
    assert (tau > 0).all() and torch.allclose(tau, torch.full_like(tau, net.eps))


def test_masked_keys_get_zero_weight_and_valid_rows_sum_to_one():
    m = module()
    x = torch.randn(2, 8, 10, 14)
    mask = torch.zeros(2, 1, 10, 14)
    mask[0, :, 2:6, 3:8] = 1
    mask[1, :, 5:, 9:] = 1
    key_missing = m.key_missing(mask, (10, 14))
    assert key_missing.shape == (2, 8 * 12)
    # a key is missing iff its 3x3 patch touches a hole cell
    expected = torch.nn.functional.max_pool2d(mask, 3, stride=1).flatten(1)
    assert torch.equal(key_missing, expected)
    queries, keys, _ = m.patches(m.embeddings[0](x))
    tau = torch.tensor([0.05, 2.0])
    weights = m.attention_weights(queries, keys, key_missing, tau)
    assert weights.shape == (2, 10 * 14, 8 * 12)
    assert (weights * key_missing[:, None, :]).abs().max() == 0  # exactly zero on every masked key
    assert torch.allclose(weights.sum(-1), torch.ones(2, 10 * 14), atol=1e-5)


def test_all_hole_mask_gives_zero_rows_and_no_nan():
    m = module()
    x = torch.randn(2, 8, 9, 9)
    mask = torch.ones(2, 1, 9, 9)
    mask[1, :, :, :4] = 0  # the second sample keeps some valid keys
    out, tau = m(x, mask)
    assert torch.isfinite(out).all() and torch.isfinite(tau).all()
    assert out[0].abs().max() == 0  # no valid key anywhere: nothing to copy
    assert out[1].abs().min() > 0


def test_hole_features_reach_no_output_cell_away_from_the_hole():
    """With temperatures fixed, hole cells only reach outputs within one patch of the hole (masked keys = 0)."""
    m = module()
    x = torch.randn(1, 8, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5:9, 6:10] = 1
    y = x + mask * torch.randn_like(x) * 5  # new features in the hole only
    tau = torch.tensor([[0.1, 1.0]])
    a, _ = m(x, mask, temperatures=tau)
    b, _ = m(y, mask, temperatures=tau)
    hole_cells = torch.nonzero(mask[0, 0])
    grid = torch.stack(torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij"), -1)
    chebyshev = (grid[:, :, None, :] - hole_cells[None, None]).abs().amax(-1).amin(-1)
    far = chebyshev >= 3
    assert far.any() and (~far).any()
    assert torch.equal(a[..., far], b[..., far])
    assert not torch.equal(a[..., ~far], b[..., ~far])  # near the hole queries do change: the test can fail


def test_each_query_copies_itself_at_a_tiny_temperature():
    """Unfold, normalise and fold are aligned: with no hole every query's best key is its own patch."""
    m = module()
    x = torch.randn(2, 8, 12, 15)
    out, _ = m(x, torch.zeros(2, 1, 12, 15), temperatures=torch.full((2, 2), 1e-4))
    embedded = torch.cat([embed(x) for embed in m.embeddings], dim=1)
    inner = (..., slice(2, -2), slice(2, -2))
    assert torch.allclose(out[inner], embedded[inner], atol=1e-5)
    assert not torch.allclose(out, embedded, atol=1e-5)  # border cells average shifted patches


def test_higher_temperature_spreads_attention():
    m = module()
    queries, keys, _ = m.patches(m.embeddings[0](torch.randn(1, 8, 8, 8)))
    key_missing = torch.zeros(1, keys.shape[1])
    entropies = []
    for tau in (0.01, 0.1, 1.0, 10.0):
        with torch.no_grad():
            w = m.attention_weights(queries, keys, key_missing, torch.tensor([tau]))
        entropies.append(float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean()))
    assert entropies == sorted(entropies) and entropies[-1] > entropies[0] + 1


def test_chunked_queries_equal_one_block():
    x = torch.randn(2, 8, 12, 10)
    mask = (torch.rand(2, 1, 12, 10) > 0.7).float()
    whole, _ = module(max_elements=10**9)(x, mask)
    chunked, _ = module(max_elements=2 * 80 * 7)(x, mask)  # 7 query rows per chunk, a ragged last chunk
    assert torch.allclose(whole, chunked, atol=1e-6)


# ---- the generator ----


@pytest.mark.parametrize("size", [(60, 84), (36, 100), (64, 64)])
def test_generator_shapes_at_sizes_meeting_the_multiple(size):
    G = tiny()
    image, _ = random_batch(n=2, size=max(size))
    image = image[..., : size[0], : size[1]]
    mask = torch.zeros(2, 1, *size)
    mask[..., size[0] // 4 : size[0] // 2, size[1] // 3 : size[1] // 2] = 1
    with torch.no_grad():
        out = G(image * (1 - mask), mask)
    assert [s.shape for s in out.stages] == [image.shape, image.shape]
    assert all(s.min() >= -1 and s.max() <= 1 for s in out.stages)
    assert out.aux["temperature"].shape == (2, 2) and (out.aux["temperature"] > 0).all()


def test_generator_rejects_bad_sizes_with_one_line():
    G = tiny()
    with pytest.raises(InputSizeError, match="multiple of 4"):
        G(torch.zeros(1, 3, 62, 64), torch.zeros(1, 1, 62, 64))
    with pytest.raises(InputSizeError, match="at least 3x3"):
        G(torch.zeros(1, 3, 8, 64), torch.zeros(1, 1, 8, 64))


def test_hole_is_filled_with_the_imagenet_mean_before_any_layer():
    """Whatever sits in the hole, the coarse network sees the ImageNet mean colour there."""
    G = tiny()
    image, mask = random_batch()
    seen = []
    G.coarse.conv1.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        G(image, mask)  # hole content NOT zeroed by the caller
    rgb = seen[0][:, :3]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 2 - 1
    assert torch.allclose(rgb * mask, mean * mask.expand_as(rgb), atol=1e-6)
    assert torch.equal(rgb * (1 - mask), image * (1 - mask))
    assert torch.equal(seen[0][:, 3:], mask)


def test_samples_do_not_depend_on_the_rest_of_the_batch():
    G = tiny()
    image, mask = random_batch(n=2)
    with torch.no_grad():
        alone = G(image[:1] * (1 - mask[:1]), mask[:1])
        batched = G(image * (1 - mask), mask)
    for a, b in zip(alone.stages, batched.stages):
        assert torch.allclose(a[0], b[0], atol=1e-5)
    assert torch.allclose(alone.aux["temperature"][0], batched.aux["temperature"][0], atol=1e-6)


def test_sketch_model_uses_lines_inside_the_hole_only():
    G = tiny("mhtma_sketch")
    image, mask = random_batch()
    sketch = torch.zeros_like(mask)
    sketch[..., 20:44, 24] = 1  # a vertical line crossing the first sample's hole and beyond
    sketch[..., 40, 8:60] = 1
    other = image + mask * (torch.rand_like(image) - image)
    with torch.no_grad():
        a = G(image * (1 - mask), mask, sketch=sketch)
        b = G(other * (1 - mask), mask, sketch=sketch)  # other hole content, same sketch
        c = G(image * (1 - mask), mask, sketch=sketch * mask)  # the same lines cut to the hole
        d = G(image * (1 - mask), mask)  # nothing drawn
    for x, y, z in zip(a.stages, b.stages, c.stages):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert not torch.equal(a.final, d.final)  # the sketch does guide
    assert torch.equal(a.aux["sketch"], (sketch * mask).expand(-1, 3, -1, -1) * 2 - 1)


def test_plain_model_refuses_a_sketch():
    with pytest.raises(ZooError, match="mhtma_sketch"):
        image, mask = random_batch()
        tiny()(image * (1 - mask), mask, sketch=torch.zeros_like(mask))


# ---- the sketch pipeline ----


def synthetic_image(height=128, width=160):
    """A bright rectangle, a grey disk and a 6x6 speck whose edge ring is an 8-connected blob under 100 px."""
    gray = np.zeros((height, width), np.float32)
    gray[20:90, 30:110] = 1.0
    rr, cc = draw.disk((100, 130), 20, shape=gray.shape)
    gray[rr, cc] = 0.6
    gray[4:10, 140:146] = 1.0
    return torch.from_numpy(gray * 2 - 1)[None].expand(3, -1, -1)


def component_sizes(binary):
    return [r.area for r in measure.regionprops(measure.label(binary, connectivity=2))]


def test_sketch_pipeline_gives_thin_lines_and_no_small_components():
    from zoo.mhtma import edge_map

    steps = sketch_steps(edge_map(synthetic_image()))
    binary, opened, sketch = steps["binary"], steps["opened"], steps["sketch"]
    assert min(component_sizes(binary)) < 100  # the speck: area opening has something to remove
    assert min(component_sizes(opened)) >= 100
    assert not opened[:16, 134:152].any() and binary[:16, 134:152].any()
    assert sketch.any() and not (sketch & ~opened).any()  # a subset of the opened map
    assert np.array_equal(skeletonize(sketch), sketch)  # thinning again changes nothing: one-pixel lines
    assert not (sketch[:-1, :-1] & sketch[1:, :-1] & sketch[:-1, 1:] & sketch[1:, 1:]).any()
    assert sketch.sum() < opened.sum() / 2
    assert torch.equal(make_sketch(synthetic_image())[0], torch.from_numpy(sketch).float())


def test_precomputed_edge_maps_and_canny():
    edges = np.zeros((64, 64), np.float32)
    edges[10:14, 5:60] = 0.9  # a thick bar of 220 px: kept and thinned
    edges[40:45, 20:30] = 0.9  # 50 px: removed by area opening
    edges[50:60, 50:60] = 0.5  # under the threshold
    sketch = make_sketch(edges=edges)[0].bool().numpy()
    assert sketch[10:14].any() and not sketch[30:].any()
    assert sketch[10:14].sum(0).max() == 1  # one pixel across the bar
    canny = make_sketch(synthetic_image(), detector="canny")
    assert canny.shape == (1, 128, 160) and canny.sum() > 0 and set(canny.unique().tolist()) <= {0.0, 1.0}


def test_training_condition_is_the_sketch_inside_the_hole():
    image = synthetic_image()[None].repeat(2, 1, 1, 1)
    mask = torch.zeros(2, 1, 128, 160)
    mask[0, :, 10:60, 20:80] = 1
    sketch = sketch_condition(image, mask)["sketch"]
    assert sketch.shape == (2, 1, 128, 160)
    assert torch.equal(sketch[0], make_sketch(image[0]) * mask[0])
    assert sketch[0].sum() > 0 and sketch[1].sum() == 0


def test_user_drawing_is_thinned_to_one_pixel():
    drawing = np.zeros((64, 64), np.uint8)
    drawing[20:27, 5:60] = 255  # a 7-px-wide stroke
    lines = sketch_from_drawing(drawing)
    assert lines.dtype == torch.float32 and lines.sum() > 40
    assert lines[20:27].sum(0).max() == 1


# ---- the CLI ----


def test_cli_inpaint_takes_a_drawn_sketch(tmp_path, capsys):
    from PIL import Image

    from zoo.cli import main

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    hole = np.zeros((48, 40), np.uint8)
    hole[10:30, 8:32] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    paper = np.full((48, 40), 255, np.uint8)
    paper[18:21, 2:38] = 0  # a dark 3-px stroke on white paper
    Image.fromarray(paper).save(tmp_path / "sketch.png")
    args = ["inpaint", "--image", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png"),
            "--sketch", str(tmp_path / "sketch.png"), "--cpu"]
    assert main([*args, "--model", "mhtma_sketch", "--out", str(tmp_path / "out.png")]) == 0
    out = np.array(Image.open(tmp_path / "out.png"))
    assert out.shape == (48, 40, 3)
    assert np.array_equal(out[hole == 0], np.array(Image.open(tmp_path / "image.png"))[hole == 0])
    capsys.readouterr()
    for model in ("mhtma", "deepfill_v2"):  # models without a sketch input say so in one line
        assert main([*args, "--model", model, "--out", str(tmp_path / f"{model}.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "sketch" in err and "\n" not in err
    Image.fromarray(paper[:40]).save(tmp_path / "short.png")
    args[args.index(str(tmp_path / "sketch.png"))] = str(tmp_path / "short.png")
    assert main([*args, "--model", "mhtma_sketch", "--out", str(tmp_path / "x.png")]) == 2
    assert "40x40" in capsys.readouterr().err
