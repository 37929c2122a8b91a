"""MAT's discriminator: a StyleGAN2 residual discriminator with minibatch-std, applied twice.

The main head judges the final image, a second head with half the channels judges the stage-1 image; both see
the mask as a centred channel. Called in the zoo convention ``D(image, mask, image_stage1)`` (mask 1 = hole;
converted here to MAT's 1 = known, fed as ``known - 0.5``); returns ``(main_logits, stage1_logits)``, N x 1 each.
Module names are the official ones (``Dis``, ``fc0``, ``fc1``, ``Dis_stg1``, ``fc0_stg1``, ``fc1_stg1``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from discriminators import register_discriminator
from zoo.errors import InputSizeError
from zoo.layers.stylegan2 import Conv2dLayer, FullyConnectedLayer


class DisFromRGB(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv2dLayer(in_channels, out_channels, 1, activation="lrelu")

    def forward(self, x):
        return self.conv(x)


class DisBlock(nn.Module):
    """Two 3x3 convs (the second 2x down) plus a 1x1 down-sampling skip; both branches scaled by sqrt(1/2)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x):
        skip = self.skip(x, gain=math.sqrt(0.5))
        return skip + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class MinibatchStdLayer(nn.Module):
    """Appends the mean standard deviation over groups of ``group_size`` samples as ``num_channels`` channels.

    StyleGAN2 requires the batch to be divisible by the group size; here the group is the largest divisor of the
    batch not above ``group_size`` (the same group whenever the official code would run).
    """

    def __init__(self, group_size=4, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size or n, n)
        while n % g:
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def _trunk(resolution, nf, in_channels, mbstd_group_size, mbstd_num_channels):
    layers = [DisFromRGB(in_channels, nf(resolution))]
    res = resolution
    while res > 4:
        layers.append(DisBlock(nf(res), nf(res // 2)))
        res //= 2
    layers.append(MinibatchStdLayer(mbstd_group_size, mbstd_num_channels))
    layers.append(Conv2dLayer(nf(4) + mbstd_num_channels, nf(4), 3, activation="lrelu"))
    return nn.Sequential(*layers)


class StyleGANDiscriminator(nn.Module):
    def __init__(self, image_size=512, img_channels=3, channel_base=32768, channel_max=512, mbstd_group_size=4,
                 mbstd_num_channels=1):
        super().__init__()
        if image_size < 8 or 2 ** int(math.log2(image_size)) != image_size:
            raise ValueError(f"the StyleGAN discriminator needs a power-of-two image size >= 8, got {image_size}")
        self.resolution = image_size

        def nf(res):
            return min(channel_base // res, channel_max)

        def half(res):
            return nf(res) // 2

        self.Dis = _trunk(image_size, nf, img_channels + 1, mbstd_group_size, mbstd_num_channels)
        self.fc0 = FullyConnectedLayer(nf(4) * 16, nf(4), activation="lrelu")
        self.fc1 = FullyConnectedLayer(nf(4), 1)
        self.Dis_stg1 = _trunk(image_size, half, img_channels + 1, mbstd_group_size, mbstd_num_channels)
        self.fc0_stg1 = FullyConnectedLayer(half(4) * 16, half(4), activation="lrelu")
        self.fc1_stg1 = FullyConnectedLayer(half(4), 1)

    def forward(self, image, mask, image_stage1=None):
        """``image_stage1`` defaults to ``image`` (a real image is shown to both heads)."""
        if image.shape[-2:] != (self.resolution, self.resolution):
            raise InputSizeError(f"this discriminator was built for {self.resolution}x{self.resolution} images, got "
                                 f"{image.shape[-2]}x{image.shape[-1]}")
        centred = (1 - mask) - 0.5  # MAT's mask: 1 = known
        image_stage1 = image if image_stage1 is None else image_stage1
        x = self.Dis(torch.cat([centred, image], dim=1))
        x = self.fc1(self.fc0(x.flatten(start_dim=1)))
        y = self.Dis_stg1(torch.cat([centred, image_stage1], dim=1))
        y = self.fc1_stg1(self.fc0_stg1(y.flatten(start_dim=1)))
        return x, y


@register_discriminator("stylegan")
def stylegan(image_size=512, **kwargs):
    return StyleGANDiscriminator(image_size=image_size, **kwargs)
