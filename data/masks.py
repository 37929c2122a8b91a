"""Seeded mask generators. Each returns a float32 H x W array in {0, 1}, 1 = hole.

Every generator takes a ``numpy.random.Generator``, so the same seed gives the same mask on any machine.
Sizes stated in pixels by the papers (brush widths, 128-pixel boxes, 96-pixel squares) are for 256 x 256
images and scale with the image side.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from zoo.errors import MaskError, ZooError

MaskFn = Callable[..., np.ndarray]
MASK_GENERATORS: dict[str, MaskFn] = {}


def register_mask(name: str):
    def wrap(fn):
        MASK_GENERATORS[name] = fn
        return fn

    return wrap


def make_mask(name: str, rng: np.random.Generator, height: int, width: int, **kwargs) -> np.ndarray:
    if name not in MASK_GENERATORS:
        raise ZooError(f"unknown mask generator {name!r}; known: {', '.join(sorted(MASK_GENERATORS))}")
    return MASK_GENERATORS[name](rng, height, width, **kwargs)


@register_mask("free_form")
def free_form(rng, height, width, max_strokes=3, min_vertices=4, max_vertices=12, min_width=12, max_width=40,
              mean_angle=2 * math.pi / 5, angle_range=2 * math.pi / 15):
    """DeepFill v2's brush strokes: 1-3 polylines of 4-11 vertices, 12-40 px wide at 256 px, random flips."""
    scale = min(height, width) / 256
    mask = np.zeros((height, width), np.uint8)
    radius = math.hypot(height, width) / 8
    for _ in range(rng.integers(1, max_strokes + 1)):
        n = int(rng.integers(min_vertices, max_vertices))
        low = mean_angle - rng.uniform(0, angle_range)
        high = mean_angle + rng.uniform(0, angle_range)
        angles = [rng.uniform(low, high) if i % 2 else 2 * math.pi - rng.uniform(low, high) for i in range(n)]
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height)))]
        for angle in angles:
            r = float(np.clip(rng.normal(radius, radius // 2), 0, 2 * radius))
            x = np.clip(points[-1][0] + r * math.cos(angle), 0, width)
            y = np.clip(points[-1][1] + r * math.sin(angle), 0, height)
            points.append((int(x), int(y)))
        stroke = max(1, int(rng.uniform(min_width, max_width) * scale))
        for a, b in zip(points[:-1], points[1:]):
            cv2.line(mask, a, b, 1, stroke)
        for p in points:
            cv2.circle(mask, p, stroke // 2, 1, -1)
    if rng.normal() > 0:
        mask = mask[:, ::-1]
    if rng.normal() > 0:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask, dtype=np.float32)


@register_mask("box")
def box(rng, height, width, max_size=128, max_delta=32):
    """DeepFill v1's rectangle: a (max_size x max_size at 256 px) box anywhere, each side shrunk by up to
    max_delta / 2."""
    scale = min(height, width) / 256
    bh, bw = min(height, round(max_size * scale)), min(width, round(max_size * scale))
    delta = round(max_delta * scale) // 2
    top, left = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
    dh, dw = int(rng.integers(0, delta + 1)), int(rng.integers(0, delta + 1))
    mask = np.zeros((height, width), np.float32)
    mask[top + dh : top + bh - dh, left + dw : left + bw - dw] = 1
    return mask


@register_mask("square")
def square(rng, height, width, size=96):
    """An axis-aligned square of ``size`` px (at 256 px), uniformly placed."""
    scale = min(height, width) / 256
    s = max(1, min(height, width, round(size * scale)))
    top, left = int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1))
    mask = np.zeros((height, width), np.float32)
    mask[top : top + s, left : left + s] = 1
    return mask


@register_mask("box_and_free_form")
def box_and_free_form(rng, height, width):
    """DeepFill v2's training masks: the union of a v1 box and brush strokes."""
    return np.maximum(box(rng, height, width), free_form(rng, height, width))


@register_mask("free_form_and_square")
def free_form_and_square(rng, height, width, size=96):
    """MHTMA's training masks: the union of brush strokes and a 96 x 96 square."""
    return np.maximum(free_form(rng, height, width), square(rng, height, width, size=size))


MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_mask_file(path, height=None, width=None, hole_value: str = "white") -> np.ndarray:
    """Read a mask image; ``hole_value`` says whether ``white`` (255) or ``black`` (0) marks the hole.

    Grey levels are thresholded at 127 after an optional nearest-neighbour resize to ``height x width``.
    """
    data = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if data is None:
        raise MaskError(f"cannot read mask file {path}")
    if height is not None and data.shape != (height, width):
        data = cv2.resize(data, (width, height), interpolation=cv2.INTER_NEAREST)
    hole = data > 127 if hole_value == "white" else data <= 127
    return hole.astype(np.float32)


@functools.lru_cache(maxsize=16)
def mask_files(folder: str) -> tuple[Path, ...]:
    paths = tuple(sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in MASK_EXTENSIONS))
    if not paths:
        raise ZooError(f"no mask images found in {folder}")
    return paths


@register_mask("files")
def files(rng, height, width, folder=None, hole_value="white"):
    """A mask image drawn at random from a folder (e.g. Liu et al.'s irregular masks)."""
    if folder is None:
        raise ZooError("mask generator 'files' needs a folder: --set mask_kwargs.folder=PATH")
    paths = mask_files(str(folder))
    return read_mask_file(paths[int(rng.integers(len(paths)))], height, width, hole_value)


@register_mask("mat_random")
def mat_random(rng, height, width, hole_range=(0.0, 1.0), counts=(5, 3, 9), native_size=512):
    """MAT's training masks (``RandomMask``): the union of random rectangles (up to counts[0] boxes of at most
    half the side, up to counts[1] of at most the side) and up to counts[2] - 1 brush strokes of 4-17 vertices,
    12-48 px wide at ``native_size``; redrawn until the hole ratio lies strictly inside ``hole_range``.

    The official counts are (5, 3, 9) at 512 and (4, 2, 8) at 256, each scaled by
    min(hole_range[0] + hole_range[1], 1). Strokes are rasterised with OpenCV instead of PIL.
    """
    coef = min(hole_range[0] + hole_range[1], 1.0)
    n_small, n_large, n_strokes = (int(c * coef) for c in counts)
    scale = min(height, width) / native_size

    def boxes(mask, tries, max_h, max_w):
        for _ in range(int(rng.integers(tries)) if tries > 0 else 0):
            h, w = int(rng.integers(max_h)), int(rng.integers(max_w))
            y = int(rng.integers(-(h // 2), height - h + h // 2))
            x = int(rng.integers(-(w // 2), width - w + w // 2))
            mask[max(y, 0): min(y + h, height), max(x, 0): min(x + w, width)] = 1

    def strokes(mask, tries):
        radius = math.hypot(height, width) / 8
        for _ in range(int(rng.integers(tries)) if tries > 0 else 0):
            n = int(rng.integers(4, 18))
            low = 2 * math.pi / 5 - rng.uniform(0, 2 * math.pi / 15)
            high = 2 * math.pi / 5 + rng.uniform(0, 2 * math.pi / 15)
            angles = [2 * math.pi - rng.uniform(low, high) if i % 2 == 0 else rng.uniform(low, high)
                      for i in range(n)]
            points = [(int(rng.integers(0, width)), int(rng.integers(0, height)))]
            for angle in angles:
                r = float(np.clip(rng.normal(radius, radius // 2), 0, 2 * radius))
                points.append((int(np.clip(points[-1][0] + r * math.cos(angle), 0, width)),
                               int(np.clip(points[-1][1] + r * math.sin(angle), 0, height))))
            stroke = max(1, int(rng.uniform(12, 48) * scale))
            for a, b in zip(points[:-1], points[1:]):
                cv2.line(mask, a, b, 1, stroke)
            for p in points:
                cv2.circle(mask, p, stroke // 2, 1, -1)

    while True:
        mask = np.zeros((height, width), np.uint8)
        boxes(mask, n_small, height // 2, width // 2)
        boxes(mask, n_large, height, width)
        brush = np.zeros((height, width), np.uint8)
        strokes(brush, n_strokes)
        if rng.random() > 0.5:
            brush = brush[::-1]
        if rng.random() > 0.5:
            brush = brush[:, ::-1]
        mask = np.maximum(mask, brush)
        ratio = float(mask.mean())
        if hole_range[0] < ratio < hole_range[1]:
            return np.ascontiguousarray(mask, dtype=np.float32)
