"""Datasets that yield (image, mask) pairs in the zoo convention.

``InpaintingStream`` is indexed by the global sample number ``k`` (0, 1, 2, ... over the whole run): the
image is ``k``-th in a seeded per-epoch shuffle, and its crop, flip and mask come from a generator seeded
by ``(seed, k)``. A sample is therefore a pure function of ``(seed, k)``: resuming at step ``s`` just skips
the batches already seen, and any number of workers or processes gives the same stream.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from data.images import load_image
from data.masks import make_mask
from zoo.errors import ZooError


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [-1, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


class InpaintingStream(Dataset):
    def __init__(self, paths, size: int, masks: str = "free_form", mask_kwargs=None, seed: int = 0,
                 length: int = 10**9, augment: bool = True):
        if not paths:
            raise ZooError("no images to train on")
        self.paths, self.size, self.seed, self.length = list(paths), size, seed, length
        self.masks, self.mask_kwargs = masks, dict(mask_kwargs or {})
        crop = (v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True) if augment
                else v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)]))
        flips = [v2.RandomHorizontalFlip()] if augment else []
        self.transform = v2.Compose([crop, *flips])
        self.unreadable: set[str] = set()
        self._epoch, self._order = -1, None

    def __len__(self):
        return self.length

    def _image_index(self, k):
        epoch, i = divmod(k, len(self.paths))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
        return self._order, i

    def _load(self, k):
        """Load the k-th image; unreadable files are skipped (with a warning naming them) for the next."""
        order, i = self._image_index(k)
        skipped = 0
        for j in range(len(self.paths)):
            path = self.paths[order[(i + j) % len(self.paths)]]
            if str(path) in self.unreadable:
                skipped += 1
                continue
            try:
                return load_image(path), skipped
            except (OSError, ValueError, SyntaxError) as exc:
                self.unreadable.add(str(path))
                warnings.warn(f"skipping unreadable image {path}: {exc.__class__.__name__}", stacklevel=2)
                skipped += 1
        raise ZooError(f"none of the {len(self.paths)} images could be read")

    def __getitem__(self, k):
        image, skipped = self._load(k)
        rng = np.random.default_rng([self.seed, k])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            image = self.transform(to_tensor(image))
        mask = make_mask(self.masks, rng, self.size, self.size, **self.mask_kwargs)
        return {"image": image, "mask": torch.from_numpy(mask)[None], "skipped": skipped}


def fixed_batch(paths, size: int, count: int, masks: str, mask_kwargs=None, seed: int = 0) -> dict:
    """A fixed batch (centre crops, masks from a seed) for sample grids: identical in every run."""
    stream = InpaintingStream(paths, size, masks, mask_kwargs, seed=seed + 1_000_003, augment=False)
    items = [stream[k] for k in range(count)]
    return {key: torch.stack([it[key] for it in items]) for key in ("image", "mask")}
