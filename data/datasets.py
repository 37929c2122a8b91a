"""Datasets that yield (image, mask) pairs in the zoo convention.

``InpaintingStream`` is indexed by the global sample number ``k`` (0, 1, 2, ... over the whole run): the
image is ``k``-th in a seeded per-epoch shuffle, and its crop, flip, rotation and mask come from a generator
seeded by ``(seed, k)`` and a key of its own. A sample is therefore a pure function of ``(seed, k)``: resuming
at step ``s`` just skips the batches already seen, and any number of workers or processes gives the same stream.

Augmentation draws as many different pixels from a few photos as it can: a square crop whose side is drawn
log-uniformly between ``min_crop`` source pixels (default: the training size, i.e. full-resolution detail)
and the whole shorter side (the whole scene, downscaled), resized to the training size, then one of the 8
symmetries of the square (flips and 90-degree rotations; ``rotations=False`` keeps horizontal flips only).
``colour=True`` also recolours half the samples (``recoloured``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from data.images import load_image
from data.masks import make_mask
from zoo.errors import ZooError

# Evaluation mask sets seed mask k with [seed, k] (data/mask_sets.py); the third key keeps a training sample's
# generator apart from theirs, so training never draws an evaluation mask, whatever the augmentation.
STREAM_KEY = 0x7EA1


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [-1, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


CACHE_BYTES = 1 << 29  # decoded images kept per worker (512 MiB): small sets such as the demo decode once


def recoloured(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The same scene in other colours (3 x H x W in [-1, 1]): half the time, a hue rotation anywhere on the
    circle and a saturation scale in [1/2, 2]. A few photos have a narrow palette; a model trained on them
    alone paints skies and leaves in the colours it saw."""
    if not rng.integers(2):
        return image
    x = (image + 1) / 2
    x = v2.functional.adjust_hue(x, float(rng.uniform(-0.5, 0.5)))
    x = v2.functional.adjust_saturation(x, float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))
    return x.clamp(0, 1) * 2 - 1


class InpaintingStream(Dataset):
    def __init__(self, paths, size: int, masks: str = "free_form", mask_kwargs=None, seed: int = 0,
                 length: int = 10**9, augment: bool = True, min_crop: int | None = None, flips: bool = True,
                 rotations: bool = True, colour: bool = False):
        if not paths:
            raise ZooError("no images to train on")
        self.paths, self.size, self.seed, self.length = list(paths), size, seed, length
        self.masks, self.mask_kwargs = masks, dict(mask_kwargs or {})
        self.augment, self.flips, self.rotations, self.colour = augment, flips, rotations, colour
        self.min_crop = size if min_crop is None else int(min_crop)
        if self.min_crop < 1:
            raise ZooError(f"min_crop must be a positive number of pixels, got {min_crop!r}")
        self.unreadable: set[str] = set()
        self._epoch, self._order = -1, None
        self._cache, self._cached_bytes = {}, 0

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
                return self._decoded(path), skipped
            except (OSError, ValueError, SyntaxError) as exc:
                self.unreadable.add(str(path))
                warnings.warn(f"skipping unreadable image {path}: {exc.__class__.__name__}", stacklevel=2)
                skipped += 1
        raise ZooError(f"none of the {len(self.paths)} images could be read")

    def _decoded(self, path):
        image = self._cache.get(str(path))
        if image is None:
            image = load_image(path)
            if self._cached_bytes + image.nbytes <= CACHE_BYTES:
                self._cache[str(path)] = image
                self._cached_bytes += image.nbytes
        return image

    def _augmented(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """A random square crop (log-uniform side in [min_crop, shorter side]), resized, then a flip/rotation."""
        h, w = image.shape[:2]
        short = min(h, w)
        low = min(self.min_crop, short)
        side = int(round(np.exp(rng.uniform(np.log(low), np.log(short)))))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = Image.fromarray(np.ascontiguousarray(image[top : top + side, left : left + side]))
        crop = np.asarray(crop.resize((self.size, self.size), Image.Resampling.BICUBIC))  # antialiased, 8-bit
        if self.rotations:
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.integers(2):
                crop = crop[::-1]  # with the 4 rotations: all 8 symmetries of the square
        elif self.flips and rng.integers(2):
            crop = crop[:, ::-1]
        return to_tensor(np.ascontiguousarray(crop))

    def __getitem__(self, k):
        image, skipped = self._load(k)
        rng = np.random.default_rng([self.seed, k, STREAM_KEY])
        if self.augment:
            tensor = self._augmented(image, rng)
            if self.colour:  # a generator of its own: the same crop and mask with colour on or off
                tensor = recoloured(tensor, np.random.default_rng([self.seed, k, STREAM_KEY, 1]))
        else:  # the fixed view: shorter side resized to ``size``, centre crop
            tensor = v2.functional.center_crop(v2.functional.resize(to_tensor(image), self.size, antialias=True),
                                               [self.size, self.size])
        mask = make_mask(self.masks, rng, self.size, self.size, **self.mask_kwargs)
        return {"image": tensor, "mask": torch.from_numpy(mask)[None], "skipped": skipped}


def fixed_batch(paths, size: int, count: int, masks: str, mask_kwargs=None, seed: int = 0) -> dict:
    """A fixed batch (centre crops, masks from a seed) for sample grids: identical in every run."""
    stream = InpaintingStream(paths, size, masks, mask_kwargs, seed=seed + 1_000_003, augment=False)
    items = [stream[k] for k in range(count)]
    return {key: torch.stack([it[key] for it in items]) for key in ("image", "mask")}
