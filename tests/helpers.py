"""Small builders shared by the test files (fixtures stay in conftest.py)."""

import numpy as np
import torch
from PIL import Image


def random_batch(n=2, size=64, seed=0, channels=3):
    """Images in [-1, 1] and masks with one rectangular hole in the first and last image."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 8 : size // 2] = 1
    mask[-1, :, size // 2 : 7 * size // 8, size // 3 : 3 * size // 4] = 1
    return image, mask


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def write_images(folder, n, size=40):
    """``n`` distinct random PNGs of size x (size + 7), every other one in a ``nested`` sub-folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = folder / ("nested" if i % 2 else "")
        sub.mkdir(exist_ok=True)
        path = sub / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size + 7, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
