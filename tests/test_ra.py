"""RA (region-aware attention): region masks, dictionary read-out, resolution handling, counts."""


import pytest
import torch
import torch.nn.functional as F

import zoo
from tests.helpers import count_parameters, random_batch
from zoo.errors import InputSizeError, ZooError
from zoo.ra import (
    LocalGlobalAttention,
    RegionAwareAttention,
    RegionMaskGenerator,
    SelectiveFusion,
    SqueezeExcite,
    region_map_image,
    region_palette,
)

AUX_IMAGES = ("region_map_lga1", "region_map_lga2", "coarse_region_map_lga1")


def tiny(**overrides):
    torch.manual_seed(0)
    return zoo.create_model("ra", **{**zoo.get_preset("ra").tiny, **overrides})



@pytest.mark.parametrize("train_mode", [True, False])
def test_region_masks_are_distributions_over_regions(train_mode):
    G = tiny(num_regions=8).train(train_mode)
    image, mask = random_batch()
    out = G(image * (1 - mask), mask)
    for key, size in (("region_masks_lga1", 64), ("region_masks_lga2", 32)):
        rm = out.aux[key]
        assert rm.shape == (2, 8, size, size)
        assert (rm >= 0).all()
        torch.testing.assert_close(rm.sum(1), torch.ones(2, size, size))
    for key in AUX_IMAGES:  # drawn by the trainer's sample grids: N x 3 x H x W in [-1, 1]
        assert out.aux[key].shape == (2, 3, 64, 64)
        assert out.aux[key].min() >= -1 and out.aux[key].max() <= 1


def test_region_map_colours_each_pixel_by_its_argmax_region():
    scores = torch.zeros(1, 5, 2, 2)
    scores[0, 3, 0, 0] = scores[0, 1, 0, 1] = scores[0, 4, 1, 0] = scores[0, 0, 1, 1] = 1
    palette = region_palette(5)
    assert len({tuple(c.tolist()) for c in palette}) == 5  # distinct colours
    picture = region_map_image(scores, (4, 4))
    assert picture.shape == (1, 3, 4, 4)
    torch.testing.assert_close(picture[0, :, 0, 0], palette[3])
    torch.testing.assert_close(picture[0, :, 1, 3], palette[1])
    torch.testing.assert_close(picture[0, :, 3, 0], palette[4])
    torch.testing.assert_close(picture[0, :, 2, 2], palette[0])


def test_dictionary_and_shared_linear_layers_receive_gradients():
    G = tiny().train()
    image, mask = random_batch()
    G(image * (1 - mask), mask).final.abs().mean().backward()
    for lga in (G.lga1, G.lga2):
        ra = lga.global_branch
        for p in (ra.dictionary, ra.region_masks.grid_linear.weight, ra.region_masks.grid_linear.bias):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_read_out_is_a_convex_combination_of_dictionary_rows_and_zero_dictionary_is_identity():
    torch.manual_seed(0)
    ra = RegionAwareAttention(channels=6, regions=4, grid=(4, 4)).eval()
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        ra.dictionary.copy_(torch.randn(4, 6))
        y, rm, _ = ra(x)
        read_out = y - x
        torch.testing.assert_close(read_out, torch.einsum("nrhw,rc->nchw", rm, ra.dictionary))  # Eq. (4)
        assert read_out.norm(dim=1).max() <= ra.dictionary.norm(dim=1).max() + 1e-5
        ra.dictionary.zero_()
        assert torch.equal(ra(x)[0], x)


def test_adaptive_grid_equals_average_pooling_by_four_at_the_built_size():
    torch.manual_seed(0)
    rmg = RegionMaskGenerator(channels=5, regions=3, grid=(6, 4)).eval()
    x = torch.randn(2, 5, 24, 16)
    with torch.no_grad():
        rm, coarse = rmg(x)
        pooled = F.avg_pool2d(rmg.to_regions(x), 4)  # the paper's computation, written out
        manual = rmg.grid_linear(pooled.flatten(2)).unflatten(2, (6, 4))
        manual = F.interpolate(manual, size=(24, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(coarse, manual)
    torch.testing.assert_close(rm, torch.softmax(rmg.norm(rmg.refine(manual)), 1))
    assert rmg.grid_linear.weight.shape == (24, 24)  # one L x L map shared by all region channels
    # weight sharing: swapping two region channels before the linear layer swaps them after it
    with torch.no_grad():
        swapped = rmg.grid_linear(pooled[:, [1, 0, 2]].flatten(2)).unflatten(2, (6, 4))
        unswapped = rmg.grid_linear(pooled.flatten(2)).unflatten(2, (6, 4))
    torch.testing.assert_close(swapped, unswapped[:, [1, 0, 2]])


def test_shared_linear_layers_are_sized_by_the_training_size():
    for size, (l1, l2) in ((64, (256, 64)), ((64, 96), (16 * 24, 8 * 12))):
        G = tiny(image_size=size)
        assert G.lga1.global_branch.region_masks.grid_linear.weight.shape == (l1, l1)
        assert G.lga2.global_branch.region_masks.grid_linear.weight.shape == (l2, l2)
        assert G.trained_size.tolist() == list(size if isinstance(size, tuple) else (size, size))
    with pytest.raises(ZooError, match="multiple of 8"):
        tiny(image_size=60)


@pytest.mark.parametrize("size", [(64, 64), (96, 80), (48, 72)])
def test_generator_runs_at_other_sizes(size):
    G = tiny().eval()  # built for 64 x 64: other sizes are pooled onto the same region grid
    image, mask = random_batch(n=2, size=max(size))
    image, mask = image[..., : size[0], : size[1]], mask[..., : size[0], : size[1]]
    with torch.no_grad():
        out = G(image * (1 - mask), mask)
    assert out.final.shape == image.shape and torch.isfinite(out.final).all()
    assert out.aux["region_masks_lga1"].shape == (2, 16, *size)
    assert out.aux["region_masks_lga2"].shape == (2, 16, size[0] // 2, size[1] // 2)
    torch.testing.assert_close(out.aux["region_masks_lga1"].sum(1), torch.ones(2, *size))


def test_non_square_model_and_inpaint_at_odd_sizes():
    G = tiny(image_size=(64, 96)).eval()
    image, mask = random_batch(n=1, size=101)
    image, mask = image[..., :70, :101], mask[..., :70, :101]  # off the size multiple in both sides
    result = zoo.inpaint(G, image, mask)
    assert result.shape == image.shape and torch.isfinite(result).all()
    assert torch.equal(result * (1 - mask), image * (1 - mask))
    with pytest.raises(InputSizeError, match="multiple of 4"):
        G(image * (1 - mask), mask)


def test_selection_weights_sum_to_one_per_channel():
    torch.manual_seed(0)
    fusion = SelectiveFusion(channels=8).train()
    a, b = torch.randn(3, 8, 5, 5), torch.randn(3, 8, 5, 5)
    w = fusion.branch_weights(a, b)
    assert w.shape == (3, 2, 8) and (w > 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(3, 8))
    torch.testing.assert_close(fusion(a, b), w[:, 0, :, None, None] * a + w[:, 1, :, None, None] * b)
    with pytest.raises(InputSizeError, match="batch of 2"):
        fusion(a[:1], b[:1])


def test_lga_keeps_shape_and_eval_outputs_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    lga = LocalGlobalAttention(channels=16, regions=4, grid=(4, 4))
    x = torch.randn(4, 16, 16, 16)
    lga.train()(x)  # move the BatchNorm running statistics away from their initial values
    lga.eval()
    with torch.no_grad():
        y, rm, _ = lga(x)
        single, _, _ = lga(x[1:2])
    assert y.shape == x.shape and rm.shape == (4, 4, 16, 16)
    torch.testing.assert_close(single, y[1:2], rtol=1e-5, atol=1e-5)


def test_squeeze_excite_equals_timms_se_module():
    """The local SE layer is timm's ``SEModule`` (same parameter names and output), without importing timm."""
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    ours = SqueezeExcite(32, hidden=2)
    theirs = timm_layers.SEModule(32, rd_channels=2)
    theirs.load_state_dict(ours.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 32, 7, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    assert not torch.equal(ours(x), x)


def test_paper_width_parameter_count_matches_the_spec():
    with torch.device("meta"):
        G = zoo.create_model("ra")
        small = zoo.create_model("ra", image_size=64)
    linear1 = G.lga1.global_branch.region_masks.grid_linear
    linear2 = G.lga2.global_branch.region_masks.grid_linear
    assert count_parameters(G) == 24_175_695  # reference/ra.md §8
    assert count_parameters(linear1) == 16_781_312 and count_parameters(linear2) == 1_049_600
    assert count_parameters(G) - count_parameters(linear1) - count_parameters(linear2) == 6_344_783
    assert count_parameters(G.lga1) == 16_854_148 and count_parameters(G.lga2) == 1_267_592
    assert count_parameters(G.lga1.local_branch) == 37_508 and count_parameters(G.lga1.fusion) == 6_336
    assert count_parameters(small) == 6_414_735  # full widths built for 64 x 64
    with torch.device("meta"):
        for n in (8, 32):  # the paper's ablation: n changes the 5x5 conv, the refinement and the dictionary
            G_n = zoo.create_model("ra", num_regions=n)
            assert G_n.lga1.global_branch.dictionary.shape == (n, 64)
            assert G_n.lga2.global_branch.dictionary.shape == (n, 128)


def test_recipe_matches_the_spec():
    preset = zoo.get_preset("ra")
    r = preset.recipe
    assert preset.num_stages == 1 and preset.native_size == 256 and preset.size_multiple == 4
    assert [(t.name, t.weight) for t in r.losses] == [("l1", 1.0), ("perceptual", 0.2), ("style", 250.0)]
    assert r.losses[1].kwargs["layers"] == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert r.losses[2].kwargs["layers"] == ("relu2_2", "relu3_3", "relu4_3", "relu5_2")
    assert (r.adversarial.loss, r.adversarial.weight, r.adversarial.fake) == ("rals", 0.2, "raw")
    assert r.discriminator == "patchgan" and r.discriminator_kwargs["final_activation"] is False
    assert r.optim_g.lr == r.optim_d.lr == 1e-4 and r.optim_g.betas == (0.5, 0.999) and r.batch_size == 8


