"""Every loss against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from losses import GeneratorLoss, reconstruction
from losses.adversarial import d_loss, g_loss, gradient_penalty, r1_penalty
from losses.perceptual import VGGFeatures, gram, vgg_layer_names
from zoo.contract import InpaintOutput
from zoo.registry import LossTerm


def pair():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # holes at |d| = 1 and 4
    return pred, target, mask


def test_l1_weightings_and_normalisations():
    pred, target, mask = pair()
    assert reconstruction.l1(pred, target, mask).item() == pytest.approx(10 / 4)
    # hole weighted 6, valid weighted 1: (6*(1+4) + 1*(2+3)) / 4
    assert reconstruction.l1(pred, target, mask, hole_weight=6).item() == pytest.approx(35 / 4)
    assert reconstruction.l1(pred, target, mask, valid_weight=0, normalize="hole").item() == pytest.approx(5 / 2)
    assert reconstruction.l1(pred, target, mask, hole_weight=0, normalize="valid").item() == pytest.approx(5 / 2)
    # HINT: all-pixel mean divided by the hole ratio (2 of 4)
    assert reconstruction.l1(pred, target, mask, normalize="hole_ratio").item() == pytest.approx((10 / 4) / 0.5)


def test_discounted_l1_matches_official_weights_on_a_rectangle():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 1:7, 2:7] = 1  # 6 x 5 hole
    weights = reconstruction.discount_weights(mask, gamma=0.5)[0, 0]
    hole = weights[1:7, 2:7]
    # gamma ** (distance to the nearest known pixel - 1): border 1, next ring 0.5, centre 0.25
    assert hole[0].tolist() == [1.0] * 5
    assert hole[2, 2].item() == 0.25 and hole[1, 1].item() == 0.5
    assert weights.sum() == hole.sum()  # zero outside the hole
    ring = torch.ones(6, 5)
    ring[1:-1, 1:-1] = 0.5
    ring[2:-2, 2:-2] = 0.25
    assert torch.equal(hole, ring)
    pred, target = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    value = reconstruction.discounted_l1(pred, target, mask, gamma=0.5)
    assert value.item() == pytest.approx(ring.sum().item() / 30)


def test_adversarial_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    # hinge (DeepFill v2 halves): 0.5*mean(relu(1-real)) + 0.5*mean(relu(1+fake)) = 0.5*0.5 + 0.5*0.75
    assert d_loss("hinge", real, fake).item() == pytest.approx(0.25 + 0.375)
    assert g_loss("hinge", real, fake).item() == pytest.approx(0.75)
    assert d_loss("wgan_gp", real, fake).item() == pytest.approx(-0.75 - 1.0)
    # lsgan: 0.5 * (mean((real-1)^2) + mean(fake^2)); G: mean((fake-1)^2)
    assert d_loss("lsgan", real, fake).item() == pytest.approx(0.5 * (1.0 + (4 + 0.25) / 2))
    assert g_loss("lsgan", real, fake).item() == pytest.approx((9 + 0.25) / 2)
    # RaLS with mean real 1, mean fake -0.75
    d = 0.5 * (((real + 0.75 - 1) ** 2).mean() + ((fake - 1 + 1) ** 2).mean())
    g = 0.5 * (((fake - 1 - 1) ** 2).mean() + ((real + 0.75 + 1) ** 2).mean())
    assert d_loss("rals", real, fake).item() == pytest.approx(d.item())
    assert g_loss("rals", real, fake).item() == pytest.approx(g.item())
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert d_loss("nonsaturating", real, fake).item() == pytest.approx(
        (sp(-2) + sp(0.5)) / 2 + (sp(-2) + sp(0)) / 2)
    assert g_loss("nonsaturating", real, fake).item() == pytest.approx((sp(2) + sp(-0.5)) / 2)
    # two heads add up
    assert d_loss("hinge", (real, real), (fake, fake)).item() == pytest.approx(2 * (0.25 + 0.375))


class Linear(torch.nn.Module):
    """D(x) = sum(w * x) per sample: its input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, image, mask, *extra):
        return (image * self.w).flatten(1).sum(1)


def test_gradient_penalty_and_r1_by_hand():
    image = torch.zeros(2, 1, 2, 2)
    mask = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 2, 2).expand(2, 1, 2, 2)
    D = Linear(0.5)
    # ||grad|| = sqrt(4 * 0.25) = 1 over the whole image -> penalty 0; over the hole only 0.5 -> 0.25
    assert gradient_penalty(D, [image], [image + 1], mask).item() == pytest.approx(0.0)
    assert gradient_penalty(D, [image], [image + 1], mask, hole_only=True).item() == pytest.approx(0.25)
    real = torch.zeros(2, 1, 2, 2, requires_grad=True)
    assert r1_penalty(D(real, mask), real).item() == pytest.approx(4 * 0.25)


def test_vgg_layer_names_follow_torchvision():
    names16, names19 = vgg_layer_names("vgg16"), vgg_layer_names("vgg19")
    assert len(names16) == 31 and len(names19) == 37  # len(torchvision vgg.features)
    assert names16[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names19.index("conv4_4") == 25 and names19.index("conv5_4") == 34


def test_gram_normalisation():
    f = torch.ones(1, 2, 3, 3)
    assert torch.allclose(gram(f), torch.full((1, 2, 2), 9 / (2 * 9)))


def test_weights_resolver_loads_file_under_standard_name(tmp_path, monkeypatch):
    """A state dict saved as vgg16-397923af.pth in the hub cache is what the extractor uses."""
    from torchvision.models import vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(7)
    reference = vgg16(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    extractor = VGGFeatures("vgg16", normalize="none", allow_random=False)
    assert extractor.weights_source.endswith("vgg16-397923af.pth")
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(extractor(x, ["relu2_1"])["relu2_1"], reference.features[:7](x), atol=1e-6)


def test_missing_weights_message_and_random_fallback(tmp_path, monkeypatch):
    from zoo.errors import WeightsNotFoundError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="vgg19-dcbb9e9d.pth"):
        VGGFeatures("vgg19", allow_random=False)
    with pytest.warns(UserWarning, match="RANDOM vgg19"):
        a = VGGFeatures("vgg19")
    with pytest.warns(UserWarning):
        b = VGGFeatures("vgg19")
    assert a.weights_source == "random"
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(a(x, ["relu1_1"])["relu1_1"], b(x, ["relu1_1"])["relu1_1"])  # seeded: reproducible


def test_generator_loss_combines_terms_and_shares_features():
    pred, target, mask = pair()
    pred, target, mask = pred.expand(1, 3, 2, 2), target.expand(1, 3, 2, 2), mask
    out = InpaintOutput(stages=(pred, pred + 1))
    terms = (LossTerm("l1", 2.0, stage=0), LossTerm("l1", 1.0, stage=1, on="composite"))
    total, values = GeneratorLoss(terms)(out, target, mask)
    composite = target * (1 - mask) + (pred + 1) * mask  # |d| = 0 at known, |1-1| and |1-4| at holes
    expected_stage1 = (composite - target).abs().mean()
    assert values["l1/0"].item() == pytest.approx(10 / 4)
    assert values["l1/1"].item() == pytest.approx(expected_stage1.item())
    assert total.item() == pytest.approx(2 * 10 / 4 + expected_stage1.item())


def test_generator_loss_perceptual_and_style_are_zero_on_identical_images():
    with pytest.warns(UserWarning):
        loss = GeneratorLoss((LossTerm("perceptual", 1.0, kwargs=dict(layers=("relu1_1", "relu2_1"))),
                              LossTerm("style", 1.0, kwargs=dict(layers=("relu2_1",), masked=True))))
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16)
    total, values = loss(InpaintOutput(stages=(image,)), image, mask)
    assert total.item() == 0
    assert len(loss.extractors) == 1  # one VGG16 shared by both terms
    changed, _ = loss(InpaintOutput(stages=(image.flip(-1),)), image, mask)
    assert changed.item() > 0
