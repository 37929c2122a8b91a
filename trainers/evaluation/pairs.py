"""Which (image, mask) pairs are scored, and how their images are read.

Pair ``k`` is (image ``k``, mask ``k mod M``), images resized (shorter side) and centre-cropped to ``size``
and put on the 8-bit grid. By default there is one pair per image, scored with the first masks of the set
(a protocol's masks do not depend on how many are drawn, see ``data.mask_sets``); ``pairs`` sets the count:
with fewer images, image ``k * I // pairs`` (blocks of consecutive pairs), with fewer masks, mask
``k mod M`` (HINT's fixed pairing). With the embedded photos (no ``data``) the default is ``EMBEDDED_PAIRS``
pairs: the 2 held-out photos with 6 masks each.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.images import load_image, resolve_source
from data.mask_sets import PROTOCOLS, MaskSet, load_mask_set, protocol_set
from zoo.errors import ZooError

EMBEDDED_PAIRS = 12


@dataclass
class Pairs:
    images: list[Path]
    masks: MaskSet
    count: int
    notes: list[str]
    source: str

    def image_index(self, k: int) -> int:
        # With more pairs than images each image takes a block of consecutive pairs, so that it meets
        # consecutive masks (all six buckets of an interleaved Liu set), not every I-th one.
        n = len(self.images)
        return k if self.count <= n else k * n // self.count

    def mask_index(self, k: int) -> int:
        return k % len(self.masks)

    def bucket(self, k: int) -> str | None:
        return self.masks.entries[self.mask_index(k)]["bucket"]


def plan_pairs(data=None, split="test", masks="liu", size=256, pairs=None, seed=0, hole="white") -> Pairs:
    images = resolve_source(data, split)
    count = pairs if pairs is not None else (EMBEDDED_PAIRS if data is None else len(images))
    if count < 1:
        raise ZooError(f"--pairs must be at least 1, got {count}")
    if str(masks) in PROTOCOLS:
        reference = PROTOCOLS[str(masks)].count
        mask_set = protocol_set(str(masks), size, min(count, reference), seed)
    else:
        mask_set = load_mask_set(masks, size, hole_value=hole)
        reference = len(mask_set)
    notes = []
    if count < reference:
        notes.append(f"{count} pairs use the first {count} of the {reference} masks of {mask_set.name}")
    if count < len(images):
        notes.append(f"{count} pairs use the first {count} of the {len(images)} images")
    if count > len(images):
        notes.append(f"{len(images)} images for {count} pairs: each image is used for about "
                     f"{count // len(images)} consecutive pairs")
    if count > len(mask_set):
        notes.append(f"{len(mask_set)} masks for {count} pairs: mask k mod {len(mask_set)} is reused")
    source = "embedded photos (scikit-image)" if data is None else str(data)
    return Pairs(images, mask_set, count, notes, source)


def pick_examples(plan: Pairs, per_bucket: int) -> list[int]:
    """The first ``per_bucket`` pairs of each hole-ratio bucket, for the example image grids."""
    chosen, taken = [], defaultdict(int)
    for k in range(plan.count):
        b = plan.bucket(k)
        if taken[b] < per_bucket:
            chosen.append(k)
            taken[b] += 1
    return chosen


@functools.lru_cache(maxsize=64)
def load_eval_image(path: str, size: int) -> torch.Tensor:
    """3 x size x size uint8: shorter side resized to ``size`` (antialiased), centre crop."""
    from torchvision.transforms import v2

    try:
        array = load_image(path)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ZooError(f"cannot read image {path}: {exc.__class__.__name__}") from None
    x = torch.from_numpy(np.array(array)).permute(2, 0, 1).float()
    x = v2.CenterCrop(size)(v2.Resize(size, antialias=True)(x))
    return x.round().clamp(0, 255).to(torch.uint8)


def load_batch(plan: Pairs, ks, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(target in [0, 1] on the 8-bit grid, mask N x 1 x H x W) for pairs ``ks``."""
    images = torch.stack([load_eval_image(str(plan.images[plan.image_index(k)]), size) for k in ks])
    masks = torch.stack([torch.from_numpy(plan.masks[plan.mask_index(k)]) for k in ks])[:, None].float()
    return images.float() / 255, masks
