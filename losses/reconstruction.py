"""Pixel reconstruction losses. All take ``(prediction, target, mask)`` in the zoo convention."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_cdt


def l1(prediction, target, mask, hole_weight: float = 1.0, valid_weight: float = 1.0, normalize: str = "pixels"):
    """Weighted mean absolute error.

    ``normalize``: ``pixels`` divides by every pixel (DeepFill v2, MHTMA, RA); ``hole`` / ``valid`` by the
    pixels of that region only (DeepFill v1's ae loss on known pixels); ``hole_ratio`` divides the
    all-pixel mean by the hole ratio (HINT).
    """
    weight = hole_weight * mask + valid_weight * (1 - mask)
    diff = (prediction - target).abs() * weight
    channels = prediction.shape[1]
    if normalize == "pixels":
        return diff.mean()
    if normalize == "hole":
        return diff.sum() / (channels * mask.sum()).clamp_min(1)
    if normalize == "valid":
        return diff.sum() / (channels * (1 - mask).sum()).clamp_min(1)
    if normalize == "hole_ratio":
        return diff.mean() / mask.mean().clamp_min(1e-6)
    raise ValueError(f"unknown normalize {normalize!r}")


def discount_weights(mask: torch.Tensor, gamma: float = 0.9) -> torch.Tensor:
    """DeepFill v1's spatial discount: gamma ** (distance to the nearest known pixel - 1) inside the hole.

    For a rectangular hole this is the official ``max(gamma^min(i, H-i), gamma^min(j, W-j))`` over the hole's
    box (chessboard distance to the box border); for free-form holes it generalises to the distance to the
    nearest known pixel.
    """
    holes = mask[:, 0].detach().cpu().numpy() > 0.5
    distance = np.stack([distance_transform_cdt(h, metric="chessboard") for h in holes]).astype(np.float32)
    weight = np.where(holes, gamma ** np.maximum(distance - 1, 0), 0.0).astype(np.float32)
    return torch.from_numpy(weight)[:, None].to(mask.device)


def discounted_l1(prediction, target, mask, gamma: float = 0.9):
    """Spatially discounted L1 over the hole, divided by the number of hole values."""
    weight = discount_weights(mask, gamma)
    diff = (prediction - target).abs() * weight
    return diff.sum() / (prediction.shape[1] * mask.sum()).clamp_min(1)
