"""Global-local discriminators: a global critic on the whole image and a local one around the hole.

Two variants share the code:

* ``fuse="sum"`` (DeepFill v1): two independent critics, each ending in a dense layer to one value; the
  loss adds their verdicts (returned as two heads).
* ``fuse="concat"`` (Iizuka et al., MHTMA): each branch ends in a dense layer to ``fc_width`` features,
  the two are concatenated and a last dense layer gives one logit.

Convolution widths are ``cnum`` times the per-layer multipliers (``cnum`` 64 in both papers), so
``--set recipe.discriminator_kwargs.cnum=16`` gives a narrow critic of the same design for CPU demos.

The local window has side ``local_fraction * image_size`` and is centred on the centre of each sample's
hole bounding box, clamped inside the image: real and fake of a sample get the same window.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as sn

from discriminators import register_discriminator


def hole_windows(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left corners (N x 2, (y, x)) of ``size`` x ``size`` windows centred on each hole's bounding box.

    Computed on the mask's device without reading it back (no host sync in the training step): the first and
    last hole row / column come from ``argmax`` over the any-hole profiles; a mask without hole centres the window.
    """
    _, _, height, width = mask.shape
    hole = mask[:, 0] > 0.5

    def centre(profile, length):  # profile: N x length, True where the row (column) holds a hole pixel
        first = profile.to(torch.uint8).argmax(dim=1)
        last = length - 1 - profile.flip(1).to(torch.uint8).argmax(dim=1)
        return torch.where(profile.any(dim=1), (first + last + 1) // 2, length // 2)

    cy, cx = centre(hole.any(dim=2), height), centre(hole.any(dim=1), width)
    corners = torch.stack([(cy - size // 2).clamp(0, height - size), (cx - size // 2).clamp(0, width - size)], 1)
    return corners.long()


def crop_windows(image: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` window at each image's corner, gathered on the device (no host sync)."""
    offsets = torch.arange(size, device=image.device)
    rows = (corners[:, 0:1] + offsets)[:, None, :, None]  # N x 1 x size x 1
    cols = (corners[:, 1:2] + offsets)[:, None, None, :]  # N x 1 x 1 x size
    batch = torch.arange(image.shape[0], device=image.device)[:, None, None, None]
    channels = torch.arange(image.shape[1], device=image.device)[None, :, None, None]
    return image[batch, channels, rows, cols]


class _Critic(nn.Module):
    def __init__(self, in_channels, widths, input_size, out_features, spectral_norm):
        super().__init__()
        wrap = sn if spectral_norm else (lambda m: m)
        layers, channels = [], in_channels
        for width in widths:
            layers += [wrap(nn.Conv2d(channels, width, 5, 2, 2)), nn.LeakyReLU(0.2)]
            channels = width
        self.convs = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"input size {input_size} is too small for {len(widths)} stride-2 convolutions")
        self.fc = wrap(nn.Linear(channels * side * side, out_features))

    def forward(self, x):
        return self.fc(self.convs(x).flatten(1))


class GlobalLocalDiscriminator(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        cnum: int = 64,
        global_mults=(1, 2, 4, 4),
        local_mults=(1, 2, 4, 8),
        image_size: int = 256,
        local_fraction: float = 0.5,
        fuse: str = "sum",
        fc_width: int = 1024,
        spectral_norm: bool = False,
        **_,
    ):
        super().__init__()
        if fuse not in ("sum", "concat"):
            raise ValueError("fuse must be 'sum' or 'concat'")
        self.fuse, self.use_mask = fuse, in_channels == 4
        self.local_size = int(image_size * local_fraction)
        out = 1 if fuse == "sum" else fc_width
        global_widths, local_widths = [cnum * m for m in global_mults], [cnum * m for m in local_mults]
        self.global_critic = _Critic(in_channels, global_widths, image_size, out, spectral_norm)
        self.local_critic = _Critic(in_channels, local_widths, self.local_size, out, spectral_norm)
        if fuse == "concat":
            wrap = sn if spectral_norm else (lambda m: m)
            self.act = nn.LeakyReLU(0.2)
            self.head = wrap(nn.Linear(2 * fc_width, 1))

    def forward(self, image, mask, *extra):
        x = torch.cat([image, mask], dim=1) if self.use_mask else image
        local = crop_windows(x, hole_windows(mask, self.local_size), self.local_size)
        g, l = self.global_critic(x), self.local_critic(local)
        if self.fuse == "sum":
            return g, l
        return self.head(torch.cat([self.act(g), self.act(l)], dim=1))


@register_discriminator("global_local")
def global_local(**kwargs):
    return GlobalLocalDiscriminator(**kwargs)
