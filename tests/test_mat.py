"""MAT: sizes and counts of the official model, its building blocks, randomness control, checkpoints."""

import math
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import discriminators
import zoo
from data.masks import make_mask
from tests.helpers import random_batch
from zoo.errors import CheckpointError, InputSizeError
from zoo.layers.stylegan2 import ModulatedConv2d, bias_act, conv2d_resample, fir_filter, upfirdn2d, upsample2d
from zoo.mat import TINY, Conv2dLayerPartial, SwinTransformerBlock, WindowAttention


def tiny_mat(seed=0, **overrides):
    torch.manual_seed(seed)
    return zoo.create_model("mat", **{**TINY, **overrides}).eval()


# ---------------------------------------------------------------------------------------------------------
# The official architecture, by construction


@pytest.mark.parametrize("name, params, entries", [("mat", 61_562_518, 487), ("mat_256", 59_779_834, 442)])
def test_generator_parameter_counts(name, params, entries):
    with torch.device("meta"):
        G = zoo.create_model(name)
    assert sum(p.numel() for p in G.parameters()) == params
    state = G.state_dict()
    assert len(state) == entries  # parameters + official buffers (resample_filter, attn_mask, noise_const, w_avg)
    # a few shapes from the official state-dict table
    assert state["synthesis.first_stage.tran.0.blocks.1.attn_mask"].shape == (64, 64, 64)
    assert state["synthesis.first_stage.tran.3.blocks.1.attn_mask"].shape == (4, 256, 256)
    assert "synthesis.first_stage.tran.2.blocks.1.attn_mask" not in state  # bottleneck: one window, no shift
    assert state["synthesis.dec.Dec_16x16.toRGB.conv.affine.weight"].shape == (512, 1536)
    assert state["synthesis.first_stage.to_square.weight"].shape == (256, 180)


@pytest.mark.parametrize("size, params", [(512, 36_231_618), (256, 36_083_330)])
def test_discriminator_parameter_counts(size, params):
    with torch.device("meta"):
        D = discriminators.create_discriminator("stylegan", image_size=size)
    assert sum(p.numel() for p in D.parameters()) == params
    state = D.state_dict()
    last = int(math.log2(size)) - 2 + 2  # from-RGB, one block per halving down to 4 x 4, minibatch-std, conv
    assert state[f"Dis.{last}.weight"].shape == (512, 513, 3, 3)  # after minibatch-std
    assert state[f"Dis_stg1.{last}.weight"].shape == (256, 257, 3, 3)  # the half-width stage-1 head
    if size == 512:
        assert len(state) == 132


def test_full_presets_reject_other_sizes():
    with torch.device("meta"):
        G = zoo.create_model("mat")
        image, mask = torch.zeros(1, 3, 256, 256), torch.zeros(1, 1, 256, 256)
        with pytest.raises(InputSizeError, match="multiple of 512"):
            G(image, mask)
        G = zoo.create_model("mat_256")
        with pytest.raises(InputSizeError, match="multiple of 256"):
            G(torch.zeros(1, 3, 384, 384), torch.zeros(1, 1, 384, 384))
    D = discriminators.create_discriminator("stylegan", image_size=64, channel_max=16)
    with pytest.raises(InputSizeError, match="64x64"):
        D(*random_batch(size=32))


def test_recipe_matches_the_official_training():
    preset = zoo.get_preset("mat")
    recipe = preset.recipe
    assert recipe.adversarial.loss == "nonsaturating" and recipe.adversarial.stages == (-1, 0)
    assert (recipe.adversarial.r1_gamma, recipe.adversarial.r1_interval) == (10, 16)
    (pcp,) = recipe.losses
    assert pcp.weight == 0.1 and pcp.stage == -1 and pcp.on == "composite"
    assert pcp.kwargs["layers"] == ("conv4_4", "conv5_4") and pcp.kwargs["layer_weights"] == (0.25, 0.5)
    # lr 1e-3 and betas (0, 0.99) after StyleGAN2's lazy-regularisation rescaling (G every 4, D every 16)
    assert recipe.optim_g.lr == pytest.approx(8e-4) and recipe.optim_g.betas[1] == pytest.approx(0.99**0.8)
    assert recipe.optim_d.lr == pytest.approx(1e-3 * 16 / 17)
    assert recipe.optim_d.betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert recipe.ema_kimg == 10 and recipe.masks == "mat_large"
    assert preset.input_multiple() == 512 and preset.input_multiple(TINY) == 64


# ---------------------------------------------------------------------------------------------------------
# StyleGAN2 primitives


def test_fir_fast_paths_equal_the_generic_resampling():
    """The up / down fast paths (transposed conv + filter, filter + strided conv) equal the plain definition:
    zero-insert, pad, filter, convolve (up); pad, convolve, filter, decimate (down)."""
    torch.manual_seed(0)
    f = fir_filter()
    x, w, w1 = torch.randn(2, 5, 16, 16), torch.randn(7, 5, 3, 3), torch.randn(7, 5, 1, 1)
    up = conv2d_resample(x, w, f, up=2, padding=1)
    reference = F.conv2d(upfirdn2d(x, f, up=2, padding=(3, 2, 3, 2), gain=4), w)
    assert up.shape == (2, 7, 32, 32) and torch.allclose(up, reference, atol=1e-5)
    down = conv2d_resample(x, w, f, down=2, padding=1)
    reference = upfirdn2d(F.conv2d(F.pad(x, [2, 2, 2, 2]), w), f, down=2)
    assert down.shape == (2, 7, 8, 8) and torch.allclose(down, reference, atol=1e-5)
    skip = conv2d_resample(x, w1, f, down=2)
    reference = upfirdn2d(F.conv2d(F.pad(x, [1, 1, 1, 1]), w1), f, down=2)
    assert torch.allclose(skip, reference, atol=1e-5)
    # the low-pass filter keeps a constant image constant away from the border
    ones = upsample2d(torch.ones(1, 1, 8, 8), f)
    assert ones.shape == (1, 1, 16, 16) and torch.allclose(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


@pytest.mark.parametrize("activation, gain", [("lrelu", None), ("lrelu", 0.5), ("linear", 0.5), ("linear", None)])
def test_in_place_bias_act_equals_the_plain_one(activation, gain):
    """In place, the result is bitwise the plain one, in inference without a new tensor; under autograd its
    first and second derivatives (R1 differentiates the discriminator twice) are bitwise the plain ones too."""
    torch.manual_seed(0)
    x, w, bias = torch.randn(2, 5, 9, 9), torch.randn(6, 5, 3, 3), torch.randn(6)
    with torch.no_grad():
        fresh = F.conv2d(x, w)
        plain = bias_act(fresh, bias, activation, gain)
        in_place = bias_act(fresh, bias, activation, gain, inplace=True)
    assert torch.equal(in_place, plain) and in_place.data_ptr() == fresh.data_ptr()

    def derivatives(inplace):
        xg, bg = x.clone().requires_grad_(), bias.clone().requires_grad_()
        out = bias_act(F.conv2d(xg, w), bg, activation, gain, inplace=inplace)
        grad_x, grad_b = torch.autograd.grad(out.square().sum(), [xg, bg], create_graph=True)
        second = torch.autograd.grad(grad_x.square().sum(), [xg, bg])
        return (out, grad_x, grad_b, *second)

    for a, b in zip(derivatives(True), derivatives(False)):
        assert torch.equal(a, b)


def test_modulated_conv_equals_a_per_sample_convolution():
    torch.manual_seed(0)
    layer = ModulatedConv2d(4, 6, 3, style_dim=5, demodulate=True)
    x, style = torch.randn(3, 4, 8, 8), torch.randn(3, 5)
    out = layer(x, style)
    for b in range(3):
        s = layer.affine(style[b : b + 1])[0]
        w = layer.weight[0] * layer.weight_gain * s.view(1, 4, 1, 1)
        w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        assert torch.allclose(out[b], F.conv2d(x[b : b + 1], w, padding=1)[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The mask-aware parts


def test_partial_conv_marks_neighbours_of_valid_pixels_and_zeroes_the_rest():
    torch.manual_seed(0)
    layer = Conv2dLayerPartial(2, 3, 3)
    x = torch.randn(1, 2, 8, 8)
    known = torch.zeros(1, 1, 8, 8)
    known[..., 4, 5] = 1
    out, new = layer(x, known)
    expected = torch.zeros(1, 1, 8, 8)
    expected[..., 3:6, 4:7] = 1
    assert torch.equal(new, expected)
    assert torch.all(out * (1 - new) == 0)  # no valid pixel in reach: zero features
    plain = layer.conv(x)
    assert torch.allclose(out[..., 4, 5], plain[..., 4, 5] * 9, rtol=1e-5)  # re-weighted by 9 / (1 valid pixel)
    _, down = Conv2dLayerPartial(2, 3, 3, down=2)(x, known)
    assert down.shape == (1, 1, 4, 4)  # output (i, j) sees input rows 2i-1..2i+1, cols 2j-1..2j+1
    assert torch.equal(torch.nonzero(down[0, 0]), torch.tensor([[2, 2], [2, 3]]))


def test_dynamic_mask_rule_on_hand_made_windows():
    torch.manual_seed(0)
    attention = WindowAttention(dim=12, num_heads=3)
    n = 16
    x = torch.randn(3, n, 12)
    x[1] = 0  # an all-hole window as the partial convolutions leave it: zero features
    valid = torch.zeros(3, n, 1)
    valid[0, 5] = 1  # window 0: one valid token; windows 1 and 2: none
    _, new_valid, attn = attention(x, valid, return_attention=True)
    assert torch.equal(new_valid[0], torch.ones(n, 1))  # one valid token makes the whole window valid
    assert torch.equal(new_valid[1:], torch.zeros(2, n, 1))  # an all-hole window stays invalid
    assert torch.all(attn[0, :, :, 5] > 1 - 1e-6)  # every query of window 0 attends to its valid key only
    assert torch.allclose(attn[1], torch.full_like(attn[1], 1 / n))  # uniform attention in the hole window
    # -100 on every key of a window changes nothing: its attention is the unmasked one
    _, _, unmasked = attention(x, None, return_attention=True)
    assert torch.allclose(attn[2], unmasked[2], atol=1e-6)
    assert not torch.allclose(attn[0], unmasked[0], atol=1e-3)


@pytest.mark.parametrize("shift", [0, 4])
def test_dynamic_mask_update_follows_plain_and_shifted_windows(shift):
    torch.manual_seed(0)
    block = SwinTransformerBlock(12, (16, 16), num_heads=3, window_size=8, shift_size=shift)
    mask = torch.zeros(1, 16, 16, 1)
    mask[0, 2, 3] = 1
    x = torch.randn(1, 256, 12)
    out, new = block(x, (16, 16), mask.view(1, 256, 1))
    rows = cols = list(range(8)) if shift == 0 else [12, 13, 14, 15, 0, 1, 2, 3]  # the (rolled) window of (2, 3)
    expected = torch.zeros(16, 16)
    expected[np.ix_(rows, cols)] = 1
    assert out.shape == x.shape
    assert torch.equal(new.view(16, 16), expected)


# ---------------------------------------------------------------------------------------------------------
# Randomness: z, noise_mode, seeds


def test_fixed_z_and_const_noise_are_deterministic_and_pluralistic():
    G = tiny_mat()
    with torch.no_grad():
        for module in G.modules():
            if hasattr(module, "noise_strength"):
                module.noise_strength.fill_(0.5)  # initialised at 0, as in the official code
    image, mask = random_batch()
    z = torch.randn(2, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        a = G(image * (1 - mask), mask, z=z, noise_mode="const")
        torch.manual_seed(2)  # the global RNG does not matter once z is fixed
        b = G(image * (1 - mask), mask, z=z, noise_mode="const")
        c = G(image * (1 - mask), mask, z=z, noise_mode="none")
        other = G(image * (1 - mask), mask, z=torch.randn(2, 32), noise_mode="const")
        torch.manual_seed(1)
        r1 = G(image * (1 - mask), mask, z=z, noise_mode="random")
        torch.manual_seed(2)
        r2 = G(image * (1 - mask), mask, z=z, noise_mode="random")
        s1 = G(image * (1 - mask), mask, seed=5)
        s2 = G(image * (1 - mask), mask, seed=5)
        s3 = G(image * (1 - mask), mask, seed=6)
        single = G(image[:1] * (1 - mask[:1]), mask[:1], z=z[:1], noise_mode="const")
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa, sb)
    assert not torch.allclose(a.final, other.final)  # another latent, another completion
    assert not torch.allclose(a.final, c.final)  # 'none' drops the per-layer noise
    assert not torch.allclose(r1.final, r2.final)  # 'random' redraws noise and keep-maps
    assert torch.equal(s1.final, s2.final) and not torch.allclose(s1.final, s3.final)
    assert torch.allclose(single.final, a.final[:1], atol=1e-4)  # const mode: the batch does not matter


def test_hole_content_never_leaks_with_fixed_z():
    G = tiny_mat()
    image, mask = random_batch()
    other = image + mask * (torch.rand_like(image) * 2 - 1 - image)
    z = torch.randn(2, 32)
    with torch.no_grad():
        a = G(image, mask, z=z, noise_mode="const")  # even the unmasked image: MAT zeroes the holes itself
        b = G(other * (1 - mask), mask, z=z, noise_mode="const")
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa, sb)


def test_eval_output_is_clamped_and_training_output_is_linear():
    G = tiny_mat()
    image, mask = random_batch()
    z = torch.randn(2, 32)
    with torch.no_grad():
        raw = G(image * (1 - mask), mask, z=z, clamp=False)
        out = G(image * (1 - mask), mask, z=z)
    assert raw.final.abs().max() > 1  # random weights: the linear output leaves [-1, 1] ...
    for r, o in zip(raw.stages, out.stages):
        assert torch.equal(o, r.clamp(-1, 1))  # ... and eval mode clamps it
    keep = (torch.zeros(1, 24, 4, 4), torch.zeros(1, 32, 16, 16))  # all features replaced by the latent's map
    with torch.no_grad():
        replaced = G(image * (1 - mask), mask, z=z, keep_maps=keep)
    assert not torch.allclose(replaced.final, out.final)


def test_training_mode_applies_truncation_and_style_mixing():
    G = tiny_mat(style_mixing_prob=0.0).train()
    G.mapping.w_avg_beta = 1.0  # freeze w_avg so the expected truncation is known
    G.mapping.w_avg.normal_()
    seen = []
    G.synthesis.register_forward_hook(lambda module, args, out: seen.append(args[2].detach()))
    image, mask = random_batch()
    z = torch.randn(2, 32)
    G(image * (1 - mask), mask, z=z)
    with torch.no_grad():
        w = G.mapping(z, 1.0, update_w_avg=False)
    assert torch.allclose(seen[-1], G.mapping.w_avg.lerp(w, 0.5), atol=1e-6)  # training truncation psi 0.5
    G.style_mixing_prob = 1.0
    G(image * (1 - mask), mask, z=z)
    ws, truncated = seen[-1], G.mapping.w_avg.lerp(w, 0.5)
    same = [torch.allclose(ws[:, i], truncated[:, i], atol=1e-6) for i in range(ws.shape[1])]
    cutoff = same.index(False)
    assert cutoff >= 1 and not any(same[cutoff:])  # a prefix from z, the rest from another latent


def test_inputs_larger_than_the_build_size_and_padding():
    G = tiny_mat()
    image, mask = random_batch(n=1, size=128)
    with torch.no_grad():
        out = G(image * (1 - mask), mask, z=torch.randn(1, 32))  # 2 x 2 build sizes: tiled constant noise
    assert out.final.shape == image.shape and torch.isfinite(out.final).all()
    with pytest.raises(InputSizeError, match="multiple of 64"):
        G(image[..., :96, :96], mask[..., :96, :96])
    image, mask = image[..., :100, :70], mask[..., :100, :70]
    result = zoo.inpaint(G, image, mask, seed=3)  # zoo.inpaint pads to the tiny model's multiple (64)
    assert result.shape == image.shape
    assert torch.equal(result * (1 - mask), image * (1 - mask))
    assert torch.equal(result, zoo.inpaint(G, image, mask, seed=3))


def test_mat_training_masks():
    rng = np.random.default_rng(0)
    masks = [make_mask("mat_large", rng, 64, 64, min_ratio=0.3, max_ratio=0.6) for _ in range(10)]
    for m in masks:
        assert m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
        assert 0.3 < m.mean() < 0.6
    again = [make_mask("mat_large", np.random.default_rng(0), 64, 64, min_ratio=0.3, max_ratio=0.6) for _ in range(1)]
    assert np.array_equal(again[0], masks[0])


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints


def _fake_official_tree(module, persistent, easydict):
    """Mirror ``module`` the way a StyleGAN2-ADA pickle stores it: torch containers as themselves, every other
    module as a ``torch_utils.persistence`` object holding its class name, source and ``__dict__`` state."""
    children = OrderedDict((k, _fake_official_tree(c, persistent, easydict)) for k, c in module._modules.items())
    if isinstance(module, (nn.ModuleList, nn.Sequential, nn.AdaptiveAvgPool2d)):
        clone = type(module).__new__(type(module))
        clone.__dict__.update({**module.__dict__, "_modules": children})
        return clone
    state = {"training": False, "_parameters": OrderedDict((k, v) for k, v in module._parameters.items()),
             "_buffers": OrderedDict(module._buffers), "_non_persistent_buffers_set": set(), "_modules": children,
             "weight_gain": np.float64(0.125), "_init_args": (), "_init_kwargs": easydict(resolution=64)}
    return persistent(type(module).__name__, state)


@pytest.fixture
def official_pickle(tmp_path, monkeypatch):
    """Write a fake official MAT pickle (tiny widths, random tensors, official structure and key names)."""

    def reconstruct(meta):  # stands in for torch_utils.persistence._reconstruct_persistent_obj when writing
        raise AssertionError("never called while writing")

    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"

    class Persistent:
        def __init__(self, class_name, state):
            self.meta = dict(type="class", version=6, module_src="# networks/mat.py source", class_name=class_name,
                             state=state)

        def __reduce__(self):
            return reconstruct, (self.meta,)

    fake = {"torch_utils": types.ModuleType("torch_utils"), "dnnlib": types.ModuleType("dnnlib"),
            "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
            "dnnlib.util": types.ModuleType("dnnlib.util")}
    fake["torch_utils.persistence"]._reconstruct_persistent_obj = reconstruct
    fake["dnnlib.util"].EasyDict = EasyDict
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)

    G, G_ema = tiny_mat(seed=1), tiny_mat(seed=2)
    D = discriminators.create_discriminator("stylegan", image_size=64, channel_max=16)
    snapshot = {name: _fake_official_tree(net, Persistent, EasyDict) for name, net in
                (("G", G), ("D", D), ("G_ema", G_ema))}
    snapshot.update(augment_pipe=None, training_set_kwargs=EasyDict(resolution=64, xflip=True),
                    val_set_kwargs=EasyDict(resolution=64))
    path = tmp_path / "CelebA-HQ.pkl"
    path.write_bytes(pickle.dumps(snapshot, protocol=4))
    for name in fake:  # the loader must work without the official code
        monkeypatch.delitem(sys.modules, name)
    return path, G, G_ema


PICKLE_WARNING = "ignore:Detected pickle protocol"  # hub.read_file first tries torch.load on the pickle


@pytest.mark.filterwarnings(PICKLE_WARNING)
def test_official_pickle_loads_g_ema(official_pickle):
    path, G, G_ema = official_pickle
    loaded = zoo.load("mat", checkpoint=path, **TINY)
    for key, value in G_ema.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not torch.equal(loaded.synthesis.first_stage.conv_first.conv.weight,
                           G.synthesis.first_stage.conv_first.conv.weight)  # G_ema, not G
    image, mask = random_batch()
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(image * (1 - mask), mask, z=z).final, G_ema(image * (1 - mask), mask, z=z).final)


@pytest.mark.filterwarnings(PICKLE_WARNING)
def test_official_pickle_that_does_not_fit_names_the_keys(official_pickle):
    path, _, _ = official_pickle
    with pytest.raises(CheckpointError, match=r"missing keys .*enc_conv\.2"):
        zoo.load("mat", checkpoint=path, **{**TINY, "resolution": 128})


@pytest.mark.filterwarnings(PICKLE_WARNING)
def test_pickles_with_foreign_code_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(CheckpointError, match="builtins.print"):
        zoo.load("mat", checkpoint=path, **TINY)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="not a readable MAT network pickle"):
        zoo.load("mat", checkpoint=path, **TINY)


def test_g_only_state_dict_with_and_without_noise_entries(tmp_path):
    source = tiny_mat(seed=3)
    state = source.state_dict()
    torch.save(state, tmp_path / "full.pth")
    loaded = zoo.load("mat", checkpoint=tmp_path / "full.pth", **TINY)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    # IOPaint's conversion was built without per-layer noise: its file lacks the noise entries
    no_noise = {k: v for k, v in state.items() if not k.endswith(("noise_strength", "noise_const"))}
    assert len(state) - len(no_noise) == 2 * 5  # five stage-2 StyleConvs at 64 px (22 entries at 512)
    torch.save(no_noise, tmp_path / "G.pth")
    loaded = zoo.load("mat", checkpoint=tmp_path / "G.pth", **TINY)
    assert all(float(m.noise_strength.detach()) == 0 for m in loaded.modules() if hasattr(m, "noise_strength"))
    image, mask = random_batch()
    z = torch.randn(2, 32)
    with torch.no_grad():
        a = loaded(image * (1 - mask), mask, z=z, noise_mode="const").final
        b = loaded(image * (1 - mask), mask, z=z, noise_mode="none").final
    assert torch.equal(a, b)  # zero noise strength: const noise adds nothing
    broken = dict(state)
    broken["synthesis.to_square.weight"] = torch.zeros(3, 3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="shape mismatch at synthesis.to_square.weight"):
        zoo.load("mat", checkpoint=tmp_path / "broken.pth", **TINY)


# ---------------------------------------------------------------------------------------------------------
# The CLI


def test_cli_writes_several_seeded_variants(tmp_path):
    """`zoo inpaint --variants 2` on a (tiny) MAT checkpoint: two different completions, reproducible."""
    from PIL import Image

    from zoo.cli import main

    G = tiny_mat()
    checkpoint = {"format": "inpaint-zoo-checkpoint/1", "model": "mat", "config": {"model_kwargs": dict(TINY)},
                  "G": G.state_dict(), "G_ema": None}
    torch.save(checkpoint, tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    hole = np.zeros((64, 64), np.uint8)
    hole[16:48, 16:48] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    args = ["inpaint", "--model", "mat", "--checkpoint", str(tmp_path / "tiny.pt"), "--variants", "2", "--cpu",
            "--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"),
            "--out", str(tmp_path / "out.png")]
    assert main(args) == 0
    a, b = (np.asarray(Image.open(tmp_path / f"out_{k}.png")).astype(int) for k in (0, 1))
    known = hole == 0
    assert np.array_equal(a[known], b[known])
    assert np.abs(a - b)[~known].max() > 0  # different latents, different completions
    assert main(args) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out_0.png")).astype(int), a)
