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
    """Top-left corners (N x 2, (y, x)) of ``size`` x ``size`` windows centred on each hole's bounding box."""
    n, _, height, width = mask.shape
    corners = torch.zeros(n, 2, dtype=torch.long)
    for i in range(n):
        ys, xs = torch.nonzero(mask[i, 0] > 0.5, as_tuple=True)
        if len(ys) == 0:
            cy, cx = height // 2, width // 2
        else:
            cy = (int(ys.min()) + int(ys.max()) + 1) // 2
            cx = (int(xs.min()) + int(xs.max()) + 1) // 2
        corners[i, 0] = min(max(cy - size // 2, 0), height - size)
        corners[i, 1] = min(max(cx - size // 2, 0), width - size)
    return corners


def crop_windows(image: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    return torch.stack([img[:, y : y + size, x : x + size] for img, (y, x) in zip(image, corners.tolist())])


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
