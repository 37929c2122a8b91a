"""HINT: architecture by construction, MPD pairing, SCAL temperatures, conventions, recipe, checkpoints."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import discriminators
import zoo
from losses import GeneratorLoss
from losses.perceptual import gram
from tests.helpers import random_batch
from zoo.errors import CheckpointError, InputSizeError
from zoo.hint import SCAL, MaskAwareDownsample, interleave_with_mask

TINY = zoo.get_preset("hint").tiny


def tiny_hint(seed=0):
    torch.manual_seed(seed)
    return zoo.create_model("hint", **TINY).eval()


# ---------------------------------------------------------------------------------------------------------
# The official state dict, written from the reference table (reference/hint.md, appendix), not from our model.

BLOCK_SUFFIXES = {  # suffix -> shape as a function of (dim, heads, hidden)
    "norm1_1.body.weight": lambda d, h, f: (d,),
    "norm1_1.body.bias": lambda d, h, f: (d,),
    "ffn1.project_in.weight": lambda d, h, f: (2 * f, d, 1, 1),
    "ffn1.dwconv.weight": lambda d, h, f: (2 * f, 1, 3, 3),
    "ffn1.project_out.weight": lambda d, h, f: (d, f, 1, 1),
    "norm1.body.weight": lambda d, h, f: (d,),
    "norm1.body.bias": lambda d, h, f: (d,),
    "attn.temperature": lambda d, h, f: (h, 1, 1),
    "attn.qkv.weight": lambda d, h, f: (3 * d, d, 1, 1),
    "attn.qkv_dwconv.weight": lambda d, h, f: (3 * d, 1, 3, 3),
    "attn.project_out.weight": lambda d, h, f: (d, d, 1, 1),
    "attn.conv.0.weight": lambda d, h, f: (d, d, 3, 3),
    "attn.conv.0.bias": lambda d, h, f: (d,),
    "attn.conv.1.body.weight": lambda d, h, f: (d,),
    "attn.conv.1.body.bias": lambda d, h, f: (d,),
    "attn.conv.3.weight": lambda d, h, f: (d, d, 3, 3),
    "attn.conv.3.bias": lambda d, h, f: (d,),
    "attn.conv.4.body.weight": lambda d, h, f: (d,),
    "attn.conv.4.body.bias": lambda d, h, f: (d,),
    "norm2.body.weight": lambda d, h, f: (d,),
    "norm2.body.bias": lambda d, h, f: (d,),
    "ffn.project_in.weight": lambda d, h, f: (2 * f, d, 1, 1),
    "ffn.dwconv.weight": lambda d, h, f: (2 * f, 1, 3, 3),
    "ffn.project_out.weight": lambda d, h, f: (d, f, 1, 1),
}
HIDDEN = {48: 127, 96: 255, 192: 510, 384: 1021}  # int(dim * 2.66), as listed in the reference
LEVEL_NAMES = ["encoder_level1", "encoder_level2", "encoder_level3", "latent",
               "decoder_level3", "decoder_level2", "decoder_level1"]


def official_shapes(dim=48, blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8)) -> dict:
    """Every official key and shape; the defaults are the released model (reference appendix)."""
    d1, d2, d3, d4 = dim, 2 * dim, 4 * dim, 8 * dim
    shapes = {
        "patch_embed.gproj1.weight": (2 * d1, 4, 3, 3),
        "down1_2.body.0.weight": (d1 // 2, d1, 3, 3), "down1_2.proj.weight": (d2, 2, 3, 3),
        "down2_3.body.0.weight": (d2 // 2, d2, 3, 3), "down2_3.proj.weight": (d3, 2, 3, 3),
        "down3_4.body.0.weight": (d3 // 2, d3, 3, 3), "down3_4.proj.weight": (d4, 2, 3, 3),
        "up4_3.body.0.weight": (2 * d4, d4, 3, 3), "reduce_chan_level3.weight": (d3, d4, 1, 1),
        "up3_2.body.0.weight": (2 * d3, d3, 3, 3), "reduce_chan_level2.weight": (d2, d3, 1, 1),
        "up2_1.body.0.weight": (2 * d2, d2, 3, 3), "output.0.weight": (3, d2, 3, 3),
    }
    levels = [(blocks[0], d1, heads[0]), (blocks[1], d2, heads[1]), (blocks[2], d3, heads[2]),
              (blocks[3], d4, heads[3]), (blocks[2], d3, heads[2]), (blocks[1], d2, heads[1]),
              (blocks[0], d2, heads[0])]  # decoder level 1 runs at 2 x dim
    for name, (n, d, h) in zip(LEVEL_NAMES, levels):
        for i in range(n):
            for suffix, shape in BLOCK_SUFFIXES.items():
                shapes[f"{name}.{i}.{suffix}"] = shape(d, h, HIDDEN.get(d, int(d * 2.66)))
    return shapes


def official_state(**config) -> dict:
    """Official keys and shapes; every tensor holds distinct values (cheaper than random at 72M parameters)."""
    state = {}
    for i, (key, shape) in enumerate(official_shapes(**config).items()):
        n = torch.Size(shape).numel()
        state[key] = (torch.arange(n, dtype=torch.float32) / n + i).reshape(shape) * 1e-3
    return state


# ---------------------------------------------------------------------------------------------------------
# Architecture by construction


def test_parameter_counts_match_the_official_model():
    with torch.device("meta"):
        G = zoo.create_model("hint")
    assert sum(p.numel() for p in G.parameters()) == 72_265_248
    per_module = {"patch_embed": 3_456, "encoder_level1": 374_836, "down1_2": 12_096, "down2_3": 44_928,
                  "down3_4": 172_800, "encoder_level2": 2_175_348, "encoder_level3": 8_546_280,
                  "latent": 45_185_248, "up4_3": 2_654_208, "up3_2": 663_552, "up2_1": 165_888,
                  "reduce_chan_level3": 73_728, "reduce_chan_level2": 18_432, "decoder_level3": 8_546_280,
                  "decoder_level2": 2_175_348, "decoder_level1": 1_450_228, "output": 2_592}
    for name, count in per_module.items():
        assert sum(p.numel() for p in getattr(G, name).parameters()) == count, name
    D = discriminators.create_discriminator("patchgan_edgeconnect", image_size=256,
                                            **zoo.get_preset("hint").recipe.discriminator_kwargs)
    assert sum(p.numel() for p in D.parameters()) == 2_763_776


def test_state_dict_has_exactly_the_official_973_keys_and_shapes():
    with torch.device("meta"):
        G = zoo.create_model("hint")
    ours = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert len(ours) == 973
    assert ours == official_shapes()


# ---------------------------------------------------------------------------------------------------------
# MPD


def slow_mpd(module: MaskAwareDownsample, x, mask):
    """MPD from the paper's description, one output channel at a time, with explicit sub-pixel slicing.

    Feature channel ``i`` of the unshuffled conv output is conv channel ``i // 4`` at sub-pixel position
    ``s = i % 4`` (row ``s // 2``, column ``s % 2`` of each 2x2 cell); it is paired with the mask sampled at the
    same position, and the grouped conv gives output channel ``i`` from exactly that (feature, mask) pair.
    """
    conv = module.body[0](x)
    out = []
    for i in range(module.proj.out_channels):
        c, s = divmod(i, 4)
        dy, dx = divmod(s, 2)
        pair = torch.stack([conv[:, c, dy::2, dx::2], mask[:, 0, dy::2, dx::2]], dim=1)
        out.append(F.conv2d(pair, module.proj.weight[i : i + 1], padding=1))
    return torch.cat(out, dim=1)


def test_mpd_pairs_each_feature_channel_with_the_mask_of_its_sub_pixel_position():
    torch.manual_seed(0)
    module = MaskAwareDownsample(8).double()
    x = torch.randn(2, 8, 12, 16, dtype=torch.float64)
    mask = (torch.rand(2, 1, 12, 16) > 0.5).double()
    fast = module(x, mask)
    assert fast.shape == (2, 16, 6, 8)
    torch.testing.assert_close(fast, slow_mpd(module, x, mask), rtol=0, atol=1e-12)
    # The mask matters, and through the matching position only: moving it by one pixel changes the result.
    assert not torch.allclose(fast, module(x, mask.roll(1, dims=-1)))


def test_interleave_layout_matches_the_official_loop():
    features = torch.randn(1, 12, 3, 3)
    mask = torch.rand(1, 1, 6, 6)
    unshuffled = F.pixel_unshuffle(mask, 2)
    expected = torch.zeros(1, 24, 3, 3)
    for i in range(12):  # t[2i] = f[i], t[2i + 1] = mask[i mod 4]
        expected[:, 2 * i] = features[:, i]
        expected[:, 2 * i + 1] = unshuffled[:, i % 4]
    assert torch.equal(interleave_with_mask(features, mask), expected)


# ---------------------------------------------------------------------------------------------------------
# SCAL


def test_scal_temperatures_are_learnable_and_act_per_head():
    torch.manual_seed(0)
    heads, dim = 4, 16
    attn = SCAL(dim, heads)
    assert attn.temperature.shape == (heads, 1, 1)
    assert attn.temperature.requires_grad
    assert any(p is attn.temperature for p in attn.parameters())
    x = torch.randn(2, dim, 8, 8)
    attn(x).square().mean().backward()
    grad = attn.temperature.grad.flatten()
    assert torch.isfinite(grad).all() and (grad != 0).all()

    # Changing head 2's temperature changes exactly head 2's channels of the channel-attention output.
    with torch.no_grad():
        before = attn.channel_attention(x)
        attn.temperature[2] += 3.0
        after = attn.channel_attention(x)
    changed = (before - after).abs().amax(dim=(0, 2, 3)).view(heads, dim // heads).amax(dim=1)
    assert changed[2] > 1e-4
    assert torch.all(changed[[0, 1, 3]] == 0)

    # and an optimiser step moves each head's temperature
    attn.temperature.grad = None
    opt = torch.optim.SGD([attn.temperature], lr=1.0)
    start = attn.temperature.detach().clone()
    attn(x).square().mean().backward()
    opt.step()
    assert (attn.temperature.detach() != start).all()


# ---------------------------------------------------------------------------------------------------------
# Conventions


def test_forward_is_the_official_network_on_the_official_convention():
    G = tiny_hint()
    image, mask = random_batch(size=64)
    with torch.no_grad():
        out = G(image * (1 - mask), mask)
        image01 = torch.where(mask.bool(), torch.ones_like(image), (image + 1) / 2)  # holes filled white
        official = G.forward_official(image01, mask)
    assert len(out.stages) == 1 and out.final.shape == image.shape
    assert out.final.min() >= -1 and out.final.max() <= 1
    torch.testing.assert_close(out.final, official * 2 - 1, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(72, 64), (64, 40), (60, 60)])
def test_sizes_that_are_not_multiples_of_16_are_refused(size):
    G = tiny_hint()
    image = torch.zeros(1, 3, *size)
    mask = torch.zeros(1, 1, *size)
    with pytest.raises(InputSizeError, match="multiple of 16"):
        G(image, mask)


def test_mpd_needs_no_cuda_and_other_sizes_and_batches_work():
    G = tiny_hint()
    image, mask = random_batch(n=3, size=96)
    image, mask = image[..., :80], mask[..., :80]  # 96 x 80, batch 3
    with torch.no_grad():
        out = G(image * (1 - mask), mask).final
    assert out.shape == (3, 3, 96, 80) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------------
# Discriminator and recipe


def test_edgeconnect_discriminator_shape_range_and_mask_independence():
    D = discriminators.create_discriminator("patchgan_edgeconnect", image_size=256, in_channels=3, use_sigmoid=True)
    D.eval()  # no power iteration: two calls see the same spectral norm
    image = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        a = D(image, torch.zeros(2, 1, 256, 256))
        b = D(image, torch.ones(2, 1, 256, 256))
    assert a.shape == (2, 1, 30, 30)
    assert torch.equal(a, b)
    assert (a > 0).all() and (a < 1).all()
    names = {k.split(".")[0] for k in D.state_dict()}
    assert names == {"conv1", "conv2", "conv3", "conv4", "conv5"}
    assert not any(k.endswith("bias") for k in D.state_dict())


def test_recipe_generator_loss_equals_the_official_formula():
    """l1 / mean(mask) + 0.1 perceptual + 250 style, all on [0, 1] images, as in the official InpaintingModel."""
    recipe = zoo.get_preset("hint").recipe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no VGG19 weights here: a seeded random VGG19
        loss = GeneratorLoss(recipe.losses)
    assert list(loss.extractors) == ["vgg19_none"]  # one VGG19 without ImageNet normalisation
    vgg = loss.extractors["vgg19_none"]
    image, mask = random_batch(size=64)
    pred = torch.tanh(torch.randn_like(image))
    total, _ = loss(zoo.InpaintOutput(stages=(pred,)), image, mask)

    out01, gt01 = (pred + 1) / 2, (image + 1) / 2
    l1 = (out01 - gt01).abs().mean() / mask.mean()
    perc_layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    fo, fg = vgg(out01, perc_layers), vgg(gt01, perc_layers)
    perceptual = sum((fo[k] - fg[k]).abs().mean() for k in perc_layers)
    style_layers = ["relu2_2", "relu3_4", "relu4_4", "relu5_2"]
    so, sg = vgg(out01 * mask, style_layers), vgg(gt01 * mask, style_layers)
    style = sum((gram(so[k]) - gram(sg[k])).abs().mean() for k in style_layers)
    torch.testing.assert_close(total, l1 + 0.1 * perceptual + 250 * style, rtol=1e-5, atol=1e-6)

    adv = recipe.adversarial
    assert (adv.loss, adv.weight, adv.fake) == ("lsgan", 0.01, "raw")
    assert (recipe.optim_g.lr, recipe.optim_d.lr) == (1e-4, 1e-5)
    assert recipe.optim_g.betas == recipe.optim_d.betas == (0.9, 0.999)
    assert recipe.batch_size == 4


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints


def test_official_checkpoint_loads_strictly(tmp_path):
    state = official_state()
    path = tmp_path / "InpaintingModel_gen.pth"
    torch.save({"iteration": 24000, "generator": state}, path)
    G = zoo.load("hint", checkpoint=path)
    loaded = G.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


TINY_OFFICIAL = dict(dim=TINY["dim"], blocks=TINY["num_blocks"], heads=TINY["heads"])


def test_official_checkpoint_variants_load(tmp_path):
    state = official_state(**TINY_OFFICIAL)
    path = tmp_path / "InpaintingModel_gen.pth"
    # nn.DataParallel runs prefix every key with "module."; a bare generator state dict works too
    for obj in ({"iteration": 1, "generator": {f"module.{k}": v for k, v in state.items()}},
                {f"module.{k}": v for k, v in state.items()}, state):
        torch.save(obj, path)
        loaded = zoo.load("hint", checkpoint=path, **TINY).state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_broken_official_checkpoints_name_the_offending_keys(tmp_path):
    state = official_state(**TINY_OFFICIAL)
    path = tmp_path / "InpaintingModel_gen.pth"

    def fails(obj, message):
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match=message):
            zoo.load("hint", checkpoint=path, **TINY)

    broken = dict(state)
    del broken["latent.0.attn.temperature"]
    fails({"iteration": 1, "generator": broken}, r"missing keys \['latent\.0\.attn\.temperature'\]")
    broken = {**state, "down1_2.proj.weight": torch.zeros(16, 4, 3, 3)}
    fails({"iteration": 1, "generator": broken}, r"shape mismatch at down1_2\.proj\.weight")
    fails({"iteration": 1, "generator": {"prefix." + k: v for k, v in state.items()}},
          r"unexpected keys \['prefix\.patch_embed\.gproj1\.weight'")
    fails({"discriminator": {"conv1.0.weight_orig": torch.zeros(64, 3, 4, 4)}}, "discriminator checkpoint")
    fails({"iteration": 1, "generator": {"a": 1}}, "not a HINT generator state dict")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a torch file"):
        zoo.load("hint", checkpoint=path, **TINY)
