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
