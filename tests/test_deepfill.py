"""DeepFill v1/v2: official sizes, official checkpoint layouts, fine-tuning from official weights."""

import math
from pathlib import Path

import pytest
import torch
from scipy import integrate
from scipy.stats import norm

import discriminators
import zoo
from tests.helpers import count_parameters
from trainers.config import resolve_config
from trainers.trainer import train
from zoo.errors import CheckpointError
from zoo.layers.gated_conv import INIT_GAIN, GatedConv2d

# nipponjo/deepfillv2-pytorch, both generator classes (reference/deepfill.md, appendix A), in their order:
# (official TF layer = networks_tf.py module, networks.py module, conv out, conv in, kernel)
V2_LAYERS = [
    ("conv1", "stage1.conv1", 48, 5, 5),
    ("conv2_downsample", "stage1.down_block1.conv1_downsample", 96, 24, 3),
    ("conv3", "stage1.down_block1.conv2", 96, 48, 3),
    ("conv4_downsample", "stage1.down_block2.conv1_downsample", 192, 48, 3),
    ("conv5", "stage1.down_block2.conv2", 192, 96, 3),
    ("conv6", "stage1.conv_bn1", 192, 96, 3),
    ("conv7_atrous", "stage1.conv_bn2", 192, 96, 3),
    ("conv8_atrous", "stage1.conv_bn3", 192, 96, 3),
    ("conv9_atrous", "stage1.conv_bn4", 192, 96, 3),
    ("conv10_atrous", "stage1.conv_bn5", 192, 96, 3),
    ("conv11", "stage1.conv_bn6", 192, 96, 3),
    ("conv12", "stage1.conv_bn7", 192, 96, 3),
    ("conv13_upsample", "stage1.up_block1.conv1_upsample", 96, 96, 3),
    ("conv14", "stage1.up_block1.conv2", 96, 48, 3),
    ("conv15_upsample", "stage1.up_block2.conv1_upsample", 48, 48, 3),
    ("conv16", "stage1.up_block2.conv2", 24, 24, 3),
    ("conv17", "stage1.conv_to_rgb", 3, 12, 3),
    ("xconv1", "stage2.conv_conv1", 48, 3, 5),
    ("xconv2_downsample", "stage2.conv_down_block1.conv1_downsample", 48, 24, 3),
    ("xconv3", "stage2.conv_down_block1.conv2", 96, 24, 3),
    ("xconv4_downsample", "stage2.conv_down_block2.conv1_downsample", 96, 48, 3),
    ("xconv5", "stage2.conv_down_block2.conv2", 192, 48, 3),
    ("xconv6", "stage2.conv_conv_bn1", 192, 96, 3),
    ("xconv7_atrous", "stage2.conv_conv_bn2", 192, 96, 3),
    ("xconv8_atrous", "stage2.conv_conv_bn3", 192, 96, 3),
    ("xconv9_atrous", "stage2.conv_conv_bn4", 192, 96, 3),
    ("xconv10_atrous", "stage2.conv_conv_bn5", 192, 96, 3),
    ("pmconv1", "stage2.ca_conv1", 48, 3, 5),
    ("pmconv2_downsample", "stage2.ca_down_block1.conv1_downsample", 48, 24, 3),
    ("pmconv3", "stage2.ca_down_block1.conv2", 96, 24, 3),
    ("pmconv4_downsample", "stage2.ca_down_block2.conv1_downsample", 192, 48, 3),
    ("pmconv5", "stage2.ca_down_block2.conv2", 192, 96, 3),
    ("pmconv6", "stage2.ca_conv_bn1", 192, 96, 3),
    ("pmconv9", "stage2.ca_conv_bn4", 192, 96, 3),
    ("pmconv10", "stage2.ca_conv_bn5", 192, 96, 3),
    ("allconv11", "stage2.conv_bn6", 192, 192, 3),
    ("allconv12", "stage2.conv_bn7", 192, 96, 3),
    ("allconv13_upsample", "stage2.up_block1.conv1_upsample", 96, 96, 3),
    ("allconv14", "stage2.up_block1.conv2", 96, 48, 3),
    ("allconv15_upsample", "stage2.up_block2.conv1_upsample", 48, 48, 3),
    ("allconv16", "stage2.up_block2.conv2", 24, 24, 3),
    ("allconv17", "stage2.conv_to_rgb", 3, 12, 3),
]
# daa233/generative-inpainting-pytorch DeepFill v1 generator: (module, conv out, conv in, kernel)
V1_DAA233 = [
    *[(f"coarse_generator.{n}", o, i, k) for n, o, i, k in [
        ("conv1", 32, 5, 5), ("conv2_downsample", 64, 32, 3), ("conv3", 64, 64, 3),
        ("conv4_downsample", 128, 64, 3), ("conv5", 128, 128, 3), ("conv6", 128, 128, 3),
        ("conv7_atrous", 128, 128, 3), ("conv8_atrous", 128, 128, 3), ("conv9_atrous", 128, 128, 3),
        ("conv10_atrous", 128, 128, 3), ("conv11", 128, 128, 3), ("conv12", 128, 128, 3), ("conv13", 64, 128, 3),
        ("conv14", 64, 64, 3), ("conv15", 32, 64, 3), ("conv16", 16, 32, 3), ("conv17", 3, 16, 3)]],
    *[(f"fine_generator.{n}", o, i, k) for n, o, i, k in [
        ("conv1", 32, 5, 5), ("conv2_downsample", 32, 32, 3), ("conv3", 64, 32, 3),
        ("conv4_downsample", 64, 64, 3), ("conv5", 128, 64, 3), ("conv6", 128, 128, 3),
        ("conv7_atrous", 128, 128, 3), ("conv8_atrous", 128, 128, 3), ("conv9_atrous", 128, 128, 3),
        ("conv10_atrous", 128, 128, 3), ("pmconv1", 32, 5, 5), ("pmconv2_downsample", 32, 32, 3),
        ("pmconv3", 64, 32, 3), ("pmconv4_downsample", 128, 64, 3), ("pmconv5", 128, 128, 3),
        ("pmconv6", 128, 128, 3), ("pmconv9", 128, 128, 3), ("pmconv10", 128, 128, 3), ("allconv11", 128, 256, 3),
        ("allconv12", 128, 128, 3), ("allconv13", 64, 128, 3), ("allconv14", 64, 64, 3), ("allconv15", 32, 64, 3),
        ("allconv16", 16, 32, 3), ("allconv17", 3, 16, 3)]],
]
RGB_IN = {"conv1", "xconv1", "pmconv1"}
RGB_OUT = {"conv17", "allconv17"}


def our_key(layer, param):
    """Where an official layer lives in our generator (official TF layer names, grouped by stage/branch)."""
    if layer.startswith("xconv"):
        group = "conv_branch"
    elif layer.startswith("pmconv"):
        group = "attention_in" if int(layer[6:].split("_")[0]) <= 6 else "attention_out"
    elif layer.startswith("allconv"):
        group = "decoder"
    else:
        group = "coarse"
    nested = ".conv" if layer.endswith("_upsample") else ""
    return f"{group}.{layer}{nested}.conv.{param}"


def daa233_layer(module):
    """Official TF layer name of a daa233 module (its fine conv branch drops the x, its up-convs the suffix)."""
    stage, name = module.split(".")
    if name in ("conv13", "conv15", "allconv13", "allconv15"):
        name += "_upsample"
    if stage == "fine_generator" and name.startswith("conv"):
        name = "x" + name
    return name


def random_state(rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for module, out, cin, k in rows:
        state[f"{module}.weight"] = torch.randn(out, cin, k, k, generator=g)
        state[f"{module}.bias"] = torch.randn(out, generator=g)
    return state


def v2_official_state(layout, seed=0):
    if layout == "networks_tf":
        rows = [(layer + (".conv.conv" if layer.endswith("_upsample") else ".conv"), o, i, k)
                for layer, _, o, i, k in V2_LAYERS]
    else:
        rows = [(pt + (".conv.conv" if layer.endswith("_upsample") else ".conv"), o, i, k)
                for layer, pt, o, i, k in V2_LAYERS]
    state = random_state(rows, seed)
    if layout == "networks":
        state["stage2.contextual_attention.fuse_weight"] = torch.eye(3).view(1, 1, 3, 3)
    return state



def rev(t, dim):
    return t.index_select(dim, torch.tensor([2, 1, 0]))


# ---------------------------------------------------------------------------------------------------------
# Sizes


def test_generator_parameter_counts():
    with torch.device("meta"):
        v2, v1 = zoo.create_model("deepfill_v2"), zoo.create_model("deepfill_v1")
    assert count_parameters(v2) == 4_052_478
    assert count_parameters(v2.coarse) == 1_631_151  # stage 1; stage 2 is the rest
    assert count_parameters(v2) - count_parameters(v2.coarse) == 2_421_327
    assert count_parameters(v1) == 3_601_542
    assert count_parameters(v1.coarse) == 1_448_227
    assert count_parameters(v1) - count_parameters(v1.coarse) == 2_153_315
    # the official tables add up to the same totals
    assert sum(o * i * k * k + o for _, _, o, i, k in V2_LAYERS) == 4_052_478
    assert sum(o * i * k * k + o for _, o, i, k in V1_DAA233) == 3_601_542


def test_discriminator_parameter_counts():
    v2 = zoo.get_preset("deepfill_v2").recipe
    v1 = zoo.get_preset("deepfill_v1").recipe
    sn_patchgan = discriminators.create_discriminator(v2.discriminator, image_size=256, **v2.discriminator_kwargs)
    assert count_parameters(sn_patchgan) == 5_946_816
    critics = discriminators.create_discriminator(v1.discriminator, image_size=256, **v1.discriminator_kwargs)
    assert count_parameters(critics.local_critic) == 4_339_329
    assert count_parameters(critics.global_critic) == 2_733_441
    assert v1.adversarial.d_steps == 5 and v1.adversarial.loss == "wgan_gp" and v1.adversarial.gp_hole_only
    assert v2.adversarial.d_steps == 1 and v2.adversarial.loss == "hinge"


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints


@pytest.mark.parametrize("layout", ["networks_tf", "networks"])
def test_v2_official_layouts_land_where_they_should(layout, tmp_path):
    official = v2_official_state(layout)
    path = tmp_path / f"states_{layout}.pth"
    torch.save({"G": official}, path)
    model = zoo.load("deepfill_v2", checkpoint=path)
    ours = model.state_dict()
    checked = set()
    bgr = layout == "networks_tf"  # the TF release was trained on cv2 (BGR) images
    for layer, pt, *_ in V2_LAYERS:
        source = layer if layout == "networks_tf" else pt
        source += ".conv.conv" if layer.endswith("_upsample") else ".conv"
        w, b = official[f"{source}.weight"], official[f"{source}.bias"]
        if bgr and layer in RGB_IN:
            w = torch.cat([rev(w[:, :3], 1), w[:, 3:]], dim=1)
        if bgr and layer in RGB_OUT:
            w, b = rev(w, 0), rev(b, 0)
        assert torch.equal(ours[our_key(layer, "weight")], w), layer
        assert torch.equal(ours[our_key(layer, "bias")], b), layer
        checked |= {our_key(layer, "weight"), our_key(layer, "bias")}
    assert checked == {k for k, _ in model.named_parameters()}  # every parameter came from the file
    # the behaviour the weights were trained with
    assert model.tf_mode is bgr
    assert model.coarse.conv2_downsample.conv.padding == ((0, 0) if bgr else (1, 1))
    assert model.contextual_attention.align_corners is bgr
    assert model.contextual_attention.fuse  # the official graph fuses scores (the networks_tf port does not)


def test_v2_bgr_flip_is_exactly_a_channel_reversal(tmp_path):
    """A BGR-trained model fed BGR gives the reversed output of its converted model fed RGB."""
    torch.manual_seed(0)
    bgr_model = zoo.create_model("deepfill_v2", cnum=8, tf_mode=True).eval()
    official = {k.split(".", 1)[1]: v for k, v in bgr_model.state_dict().items() if not k.startswith("flag")}
    path = tmp_path / "states_tf_tiny.pth"
    torch.save({"G": official}, path)
    rgb_model = zoo.load("deepfill_v2", checkpoint=path, cnum=8)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 8:48] = 1
    with torch.no_grad():
        rgb = rgb_model(image * (1 - mask), mask)
        bgr = bgr_model(image.flip(1) * (1 - mask), mask)
    for ours, theirs in zip(rgb.stages, bgr.stages):
        assert torch.allclose(ours, theirs.flip(1), atol=1e-5), (ours - theirs.flip(1)).abs().max()
        assert not torch.allclose(ours, theirs, atol=1e-3)  # the flip matters


@pytest.mark.parametrize("variant", ["gen", "torch_model"])
def test_v1_daa233_layouts_land_where_they_should(variant, tmp_path):
    official = random_state([(f"{m}.conv", o, i, k) for m, o, i, k in V1_DAA233])
    if variant == "torch_model":  # the TF v1 release in daa233's trainer layout: netG. + the critics
        official = {f"netG.{k}": v for k, v in official.items()}
        official["localD.linear.weight"] = torch.zeros(1, 16384)
    path = tmp_path / f"{variant}.pt"
    torch.save(official, path)
    model = zoo.load("deepfill_v1", checkpoint=path)
    ours = model.state_dict()
    prefix, bgr = ("netG.", True) if variant == "torch_model" else ("", False)
    for module, *_ in V1_DAA233:
        layer = daa233_layer(module)
        w, b = official[f"{prefix}{module}.conv.weight"], official[f"{prefix}{module}.conv.bias"]
        if bgr and layer in RGB_IN:
            w = torch.cat([rev(w[:, :3], 1), w[:, 3:]], dim=1)
        if bgr and layer in RGB_OUT:
            w, b = rev(w, 0), rev(b, 0)
        assert torch.equal(ours[our_key(layer, "weight")], w), module
        assert torch.equal(ours[our_key(layer, "bias")], b), module
    assert model.tf_mode is bgr
    # daa233 trained with its own patch normalisation; the TF weights with the official one
    assert model.contextual_attention.patch_norm == ("clamp" if bgr else "additive")


def test_converted_behaviour_survives_a_save_and_load(tmp_path):
    path = tmp_path / "states_tf.pth"
    torch.save({"G": v2_official_state("networks_tf")}, path)
    converted = zoo.load("deepfill_v2", checkpoint=path)
    ours = tmp_path / "ours.pt"
    torch.save(converted.state_dict(), ours)
    again = zoo.load("deepfill_v2", checkpoint=ours)  # built in PyTorch mode, switched by its state dict
    # TF SAME padding: by hand (asymmetric) in strided layers, by the convolution itself in stride-1 layers
    assert again.tf_mode and again.coarse.conv2_downsample.conv.padding == (0, 0)
    assert again.coarse.conv2_downsample.pad_by_hand and not again.coarse.conv1.pad_by_hand
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:36, 12:44] = 1
    with torch.no_grad():
        assert torch.equal(converted(image, mask).final, again(image, mask).final)


def test_mask_resize_variants():
    model = zoo.create_model("deepfill_v2", cnum=8)
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 122:124, :] = 1  # rows that TF's align_corners resizes keep in one step but skip in two
    stepwise = model._attention_mask(mask, (64, 64))
    assert stepwise.shape[-1] == 64
    assert torch.equal(model.contextual_attention._resize(stepwise, 32, 32),
                       torch.nn.functional.interpolate(mask, size=(32, 32)))
    model.mask_resize = "direct"
    assert torch.equal(model._attention_mask(mask, (64, 64)), torch.nn.functional.interpolate(mask, size=(32, 32)))
    model.configure(tf_mode=True)
    direct = model._attention_mask(mask, (64, 64))
    model.mask_resize = "stepwise"
    two_steps = model.contextual_attention._resize(model._attention_mask(mask, (64, 64)), 32, 32)
    assert direct.sum() > 0 and two_steps.sum() == 0


def test_bad_checkpoints_name_the_offending_keys(tmp_path):
    official = v2_official_state("networks_tf")
    cases = {
        "missing": ({k: v for k, v in official.items() if k != "pmconv5.conv.weight"}, "pmconv5.conv.weight"),
        "misshaped": ({**official, "allconv12.conv.bias": torch.zeros(7)}, "allconv12.conv.bias"),
        "extra": ({**official, "conv99.conv.weight": torch.zeros(1)}, "conv99.conv.weight"),
        "foreign": ({"encoder.0.weight": torch.zeros(1)}, "encoder.0.weight"),
    }
    for name, (state, key) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save({"G": state}, path)
        with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as err:
            zoo.load("deepfill_v2", checkpoint=path)
        assert "\n" not in str(err.value)
    # right layout, wrong width: the first misshaped key is named
    path = tmp_path / "full.pth"
    torch.save({"G": official}, path)
    with pytest.raises(CheckpointError, match=r"conv1\.conv\.weight \(48, 5, 5, 5\)"):
        zoo.load("deepfill_v2", checkpoint=path, cnum=8)
    # our own layout with a missing key goes through the generic check
    state = zoo.create_model("deepfill_v2", cnum=8).state_dict()
    del state["decoder.allconv14.conv.weight"]
    torch.save(state, tmp_path / "ours.pt")
    with pytest.raises(CheckpointError, match=r"decoder\.allconv14\.conv\.weight"):
        zoo.load("deepfill_v2", checkpoint=tmp_path / "ours.pt", cnum=8)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        zoo.load("deepfill_v2", checkpoint=tmp_path / "junk.pth")


# ---------------------------------------------------------------------------------------------------------
# Training through the one trainer


def test_init_from_an_official_checkpoint(tmp_path):
    """``zoo train --init-from states_tf_*.pth``: converted weights, TF behaviour kept in the run's checkpoint."""
    torch.manual_seed(0)
    source = zoo.create_model("deepfill_v2", cnum=8)
    official = {k.split(".", 1)[1]: v.clone() for k, v in source.state_dict().items() if not k.startswith("flag")}
    path = tmp_path / "states_tf_tiny.pth"
    torch.save({"G": official}, path)
    expected = zoo.load("deepfill_v2", checkpoint=path, cnum=8).state_dict()
    cfg = resolve_config(model="deepfill_v2", width=8, flags=dict(size=64, batch_size=2, workers=0, tracker="none",
                                                                  max_steps=1, init_from=str(path),
                                                                  out=str(tmp_path / "run")))
    run = train(cfg)
    saved = torch.load(next((Path(run) / "checkpoints").glob("*.pt")), weights_only=True, map_location="cpu")["G"]
    assert bool(saved["flag_tf_mode"])
    for key, value in expected.items():  # one Adam step (lr 1e-4) away from the converted weights
        assert (saved[key].float() - value.float()).abs().max() < 1e-3, key
    flipped = expected["coarse.conv17.conv.bias"]
    assert torch.equal(flipped, official["conv17.conv.bias"].flip(0))


@pytest.mark.parametrize("kind, gated", list(INIT_GAIN))
def test_init_gains_keep_the_second_moment(kind, gated):
    """Each gain is the one that maps a unit second moment to a unit second moment: by quadrature, then through a
    real layer on unit-scale input."""
    gain = INIT_GAIN[kind, gated]
    f = {"elu": lambda a: a if a > 0 else math.expm1(a), "relu": lambda a: max(a, 0.0), "linear": lambda a: a}[kind]
    moment = integrate.quad(lambda a: f(a) ** 2 * norm.pdf(a, scale=gain), -60, 60, points=[0])[0]
    if gated:
        moment *= integrate.quad(lambda b: (1 / (1 + math.exp(-b))) ** 2 * norm.pdf(b, scale=gain), -60, 60)[0]
    assert moment == pytest.approx(1, abs=1e-3)

    activation = {"elu": torch.nn.ELU(), "relu": torch.nn.ReLU(), "linear": None}[kind]
    torch.manual_seed(0)
    layer = GatedConv2d(64, 64, 3, activation=activation, gated=gated)
    assert layer.gated == gated and not layer.conv.bias.any()
    x = torch.randn(4, 64, 32, 32)
    with torch.no_grad():
        y = layer(x)[..., 1:-1, 1:-1]  # away from the zero padding
    assert y.pow(2).mean().item() == pytest.approx(1, rel=0.1)
