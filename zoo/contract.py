"""The tensor convention every generator, loss and discriminator shares.

* image: float32 RGB, N x 3 x H x W, in [-1, 1];
* mask: float32 in {0, 1}, N x 1 x H x W, 1 = hole;
* a generator is called as ``G(image * (1 - mask), mask, **conditioning)`` and returns ``InpaintOutput``;
* compositing happens once, outside generators (``composite``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from zoo.errors import InputSizeError, MaskError


@dataclass
class InpaintOutput:
    """Raw predictions of a generator, coarse first; ``aux`` holds named extras (attention maps, ...)."""

    stages: tuple[torch.Tensor, ...]
    aux: dict = field(default_factory=dict)

    @property
    def final(self) -> torch.Tensor:
        return self.stages[-1]


def masked_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What a generator may see: the image with its holes zeroed."""
    return image * (1 - mask)


def composite(image: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels from ``image``, hole pixels from ``prediction``."""
    return image * (1 - mask) + prediction * mask


def check_inputs(image: torch.Tensor, mask: torch.Tensor, multiple: int = 1, channels: int = 3) -> None:
    """Raise a one-line error unless ``image`` and ``mask`` follow the zoo convention."""
    if image.dim() != 4 or image.shape[1] != channels:
        raise InputSizeError(f"image must be N x {channels} x H x W, got {tuple(image.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise MaskError(f"mask must be N x 1 x H x W, got {tuple(mask.shape)}")
    if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise MaskError(
            f"mask size {tuple(mask.shape[-2:])} (batch {mask.shape[0]}) differs from image size "
            f"{tuple(image.shape[-2:])} (batch {image.shape[0]})"
        )
    h, w = image.shape[-2:]
    if h % multiple or w % multiple:
        raise InputSizeError(
            f"image size {h}x{w} is not a multiple of {multiple}; pad or crop it (zoo.inpaint does this)"
        )


def check_binary_mask(mask: torch.Tensor) -> None:
    if not torch.all((mask == 0) | (mask == 1)):
        values = torch.unique(mask)[:6].tolist()
        raise MaskError(f"mask must hold only 0 (known) and 1 (hole); found values such as {values}")
