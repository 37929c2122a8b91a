"""SN-PatchGAN (DeepFill v2): six 5x5 stride-2 spectral-normalised convolutions, one logit per patch."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from discriminators import register_discriminator


class SNPatchGAN(nn.Module):
    """Widths cnum x (1, 2, 4, 4, 4, 4); input ``[image, mask]`` when ``in_channels`` is 4, else the image.

    The official v2 code applies LeakyReLU after the last convolution too (``final_activation``); RA leaves
    it out so the relativistic loss sees unrestricted logits.
    """

    def __init__(self, in_channels: int = 4, cnum: int = 64, final_activation: bool = True, **_):
        super().__init__()
        self.use_mask = in_channels == 4
        widths = [cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            layers.append(spectral_norm(nn.Conv2d(channels, width, 5, 2, 2)))
            if i < len(widths) - 1 or final_activation:
                layers.append(nn.LeakyReLU(0.2))
            channels = width
        self.net = nn.Sequential(*layers)

    def forward(self, image, mask, *extra):
        x = torch.cat([image, mask], dim=1) if self.use_mask else image
        return self.net(x)


@register_discriminator("patchgan")
def patchgan(**kwargs):
    return SNPatchGAN(**kwargs)


class EdgeConnectPatchGAN(nn.Module):
    """EdgeConnect's PatchGAN (HINT trains with it): five 4x4 spectral-normalised bias-free convolutions.

    Widths 64, 128, 256 (stride 2), 512, 1 (stride 1), padding 1, LeakyReLU 0.2 after the first four: a 30 x 30
    patch map at 256 x 256. It sees the RGB image only (the mask is ignored) and, like the official model,
    images in [0, 1]: zoo images in [-1, 1] are mapped first, so it computes the official function of its
    weights. ``use_sigmoid`` (official: on unless the GAN loss is hinge) squashes the output for LSGAN.
    Convolution weights start from N(0, 0.02) as EdgeConnect's ``init_weights``.
    """

    def __init__(self, in_channels: int = 3, use_sigmoid: bool = True, **_):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        specs = [(in_channels, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 1), (512, 1, 1)]
        for i, (cin, cout, stride) in enumerate(specs, start=1):
            conv = nn.Conv2d(cin, cout, 4, stride, 1, bias=False)
            nn.init.normal_(conv.weight, 0.0, 0.02)
            layers = [spectral_norm(conv)]
            if i < len(specs):
                layers.append(nn.LeakyReLU(0.2))
            self.add_module(f"conv{i}", nn.Sequential(*layers))

    def forward(self, image, mask=None, *extra):
        x = (image + 1) / 2
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
        return torch.sigmoid(x) if self.use_sigmoid else x


@register_discriminator("patchgan_edgeconnect")
def patchgan_edgeconnect(**kwargs):
    return EdgeConnectPatchGAN(**kwargs)
