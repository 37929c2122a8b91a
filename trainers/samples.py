"""Sample grids: one row per preview image, columns input | each stage | completed | target | aux images."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from zoo.contract import InpaintOutput, composite


def aux_images(output: InpaintOutput, size) -> list[torch.Tensor]:
    """Aux entries that are images (N x 3 x h x w in [-1, 1]), resized to the image size."""
    images = []
    for value in output.aux.values():
        if torch.is_tensor(value) and value.dim() == 4 and value.shape[1] == 3:
            images.append(F.interpolate(value.float(), size=tuple(size), mode="nearest"))
    return images


def sample_grid(image, mask, output: InpaintOutput) -> torch.Tensor:
    """A 3 x H' x W' image in [0, 1]; holes are shown white in the input column."""
    shown_input = image * (1 - mask) + mask
    columns = [shown_input, *output.stages, composite(image, output.final, mask), image]
    columns += aux_images(output, image.shape[-2:])
    rows = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: sample by sample
    grid = make_grid(rows.clamp(-1, 1), nrow=len(columns), padding=2, normalize=True, value_range=(-1, 1))
    return grid


def save_grid(grid: torch.Tensor, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("tmp-" + path.name)
    save_image(grid, tmp)
    os.replace(tmp, path)


def aux_scalars(output: InpaintOutput) -> dict:
    """Aux entries that are per-sample scalars (N) or per-head values (N x heads), averaged over the batch."""
    scalars = {}
    for key, value in output.aux.items():
        if torch.is_tensor(value) and value.dim() in (1, 2) and value.numel() > 0:
            mean = value.detach().float().mean(0).reshape(-1)
            if mean.numel() == 1:
                scalars[f"aux/{key}"] = mean.item()
            else:
                scalars.update({f"aux/{key}_{i}": v for i, v in enumerate(mean.tolist())})
    return scalars
