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

from zoo.errors import MaskError, ZooError, lookup_name, register_name

MaskFn = Callable[..., np.ndarray]
MASK_GENERATORS: dict[str, MaskFn] = {}


def register_mask(name: str):
    def wrap(fn):
        register_name(MASK_GENERATORS, "mask generator", name, fn)
        return fn

    return wrap


def make_mask(name: str, rng: np.random.Generator, height: int, width: int, **kwargs) -> np.ndarray:
    return lookup_name(MASK_GENERATORS, "mask generator", name)(rng, height, width, **kwargs)


def brush_stroke(rng, mask, min_vertices, max_vertices, min_width, max_width, scale=1.0,
                 mean_angle=2 * math.pi / 5, angle_range=2 * math.pi / 15):
    """Draw one DeepFill-v2-style brush stroke on ``mask`` (uint8, in place): a polyline of
    [min_vertices, max_vertices) turns with radius ~ N(r, r/2), r = diagonal / 8, round joints, a width of
    [min_width, max_width) * scale pixels. Used by DeepFill v2's and MAT's (CoModGAN's) generators."""
    height, width = mask.shape
    radius = math.hypot(height, width) / 8
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


@register_mask("free_form")
def free_form(rng, height, width, max_strokes=3, min_vertices=4, max_vertices=12, min_width=12, max_width=40):
    """DeepFill v2's brush strokes: 1-3 polylines of 4-11 vertices, 12-40 px wide at 256 px, random flips."""
    mask = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(1, max_strokes + 1)):
        brush_stroke(rng, mask, min_vertices, max_vertices, min_width, max_width, scale=min(height, width) / 256)
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



MOSTLY_HOLE = 0.75  # above this hole ratio the polarity is probably inverted: warn


def check_mask_for_image(mask: np.ndarray, image_size, mask_name="mask", image_name="image", hole="white",
                         hole_setting="--hole {}") -> str | None:
    """Refuse a mask that does not fit the image or marks no / every pixel as hole (one-line ``MaskError``).

    Returns a warning when the mask covers most of the image, else None. ``hole_setting`` names the setting
    that flips the polarity in the caller's interface (the CLI's ``--hole {}``, the server's ``hole={}``).
    """
    height, width = image_size
    if mask.shape != (height, width):
        raise MaskError(f"mask {mask_name} is {mask.shape[1]}x{mask.shape[0]} but image {image_name} is "
                        f"{width}x{height}")
    hole_ratio = float(mask.mean())
    if hole_ratio in (0.0, 1.0):
        raise MaskError(f"mask {mask_name} marks {'no' if hole_ratio == 0 else 'every'} pixel as hole "
                        f"(holes are {hole} with {hole_setting.format(hole)}; is the polarity inverted?)")
    if hole_ratio > MOSTLY_HOLE:
        other = "black" if hole == "white" else "white"
        return f"the mask covers {hole_ratio:.0%} of the image; if holes are {other} use {hole_setting.format(other)}"
    return None

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


# --- Evaluation-protocol generators (Liu et al. buckets, LaMa thin/medium/thick, MAT/CoModGAN small/large) ---
# They are also usable for training (``masks: lama_thick`` etc.). ``data.mask_sets`` builds fixed, hashed
# evaluation sets from them.


def _pixel_bound(percent: float, total: int) -> int:
    """The smallest pixel count c with 100 * c >= percent * total (exact for integer percents)."""
    return math.ceil(percent * total / 100)


def _random_walk_stroke(rng, canvas, start, scale, inset=0, width_range=(8, 40), length_range=(20, 80)):
    """One thick polyline of 2-6 segments wandering from ``start`` (a blob when the width dominates); its
    vertices stay ``inset`` px plus half the stroke width away from the canvas edges."""
    height, width = canvas.shape
    thickness = max(1, int(rng.uniform(*width_range) * scale))
    pad = inset + (thickness + 1) // 2 if inset else 0
    x, y = start
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(2, 7))):
        angle += rng.uniform(-math.pi / 2, math.pi / 2)
        length = max(1.0, rng.uniform(*length_range) * scale)
        nx = int(np.clip(x + length * math.cos(angle), pad, width - 1 - pad))
        ny = int(np.clip(y + length * math.sin(angle), pad, height - 1 - pad))
        cv2.line(canvas, (x, y), (nx, ny), 1, thickness)
        cv2.circle(canvas, (nx, ny), thickness // 2, 1, -1)
        x, y = nx, ny


def _border_point(rng, height, width):
    side = int(rng.integers(4))
    if side < 2:
        return int(rng.integers(width)), 0 if side == 0 else height - 1
    return 0 if side == 2 else width - 1, int(rng.integers(height))


def touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@register_mask("liu_irregular")
def liu_irregular(rng, height, width, min_percent=1, max_percent=60, border=None, margin=8):
    """Irregular holes in the style of Liu et al. (PConv): a hole-to-image ratio in
    [min_percent, max_percent) and a hole that does (``border=True``) or does not touch the image border.

    Liu et al.'s 12,000 test masks come from occlusion estimates between video frames and cannot be
    regenerated; this imitates what their protocol controls (the ratio bucket, half of the masks touching
    the border) with random thick strokes and blobs (chosen). Strokes are added until the ratio reaches a
    target drawn uniformly in the bucket; a stroke that would overshoot (or, for non-border masks, reach
    the ``margin``-px frame, at 256) is dropped and the next ones get smaller. Users with the original
    mask files score on them with ``--masks FOLDER``.
    """
    scale = min(height, width) / 256
    total = height * width
    low, high = _pixel_bound(min_percent, total), _pixel_bound(max_percent, total)  # count in [low, high)
    if border is None:
        border = bool(rng.integers(2))
    frame = max(1, round(margin * scale))
    if not border and (height - 2 * frame) * (width - 2 * frame) < high:
        raise ZooError(f"a {height}x{width} mask cannot hold {max_percent}% of holes inside a {frame}-px frame")
    target = int(rng.integers(low, max(low, high - 2) + 1))
    mask = np.zeros((height, width), np.uint8)
    count, shrink = 0, 1.0
    for _ in range(100_000):
        trial = mask.copy()
        if border and count == 0:
            start = _border_point(rng, height, width)
        elif count and rng.uniform() < 0.5:  # grow from the current hole, so holes look connected
            ys, xs = np.nonzero(mask)
            i = int(rng.integers(len(ys)))
            start = int(xs[i]), int(ys[i])
        else:
            start = int(rng.integers(frame, width - frame)), int(rng.integers(frame, height - frame))
        _random_walk_stroke(rng, trial, start, scale * shrink, inset=0 if border else frame)
        new = int(np.count_nonzero(trial))
        in_frame = not border and (trial[:frame].any() or trial[-frame:].any() or trial[:, :frame].any()
                                   or trial[:, -frame:].any())
        if new >= high or in_frame:
            shrink = max(shrink * 0.7, 0.02)
            continue
        mask, count, shrink = trial, new, min(1.0, shrink * 1.2)
        if count >= target:
            return mask.astype(np.float32)
    raise RuntimeError("liu_irregular did not reach its target ratio")  # not reached in practice


# LaMa's random mask presets (advimman/lama configs/data_gen/random_{thin,medium,thick}_{256,512}.yaml):
# irregular strokes with probability 1 / 1.3, else boxes (box_proba 0.3); masks covering more than
# max_tamper_area = 50 % (or nothing) are drawn again. Other sizes scale the nearer config linearly (chosen).
LAMA_PRESETS = {
    ("thin", 256): dict(irregular=dict(min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40)),
    ("thin", 512): dict(irregular=dict(min_times=4, max_times=70, max_width=20, max_angle=4, max_len=100)),
    ("medium", 256): dict(irregular=dict(min_times=4, max_times=5, max_width=50, max_angle=4, max_len=100),
                          box=dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5)),
    ("medium", 512): dict(irregular=dict(min_times=4, max_times=10, max_width=100, max_angle=4, max_len=200),
                          box=dict(margin=0, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=5)),
    ("thick", 256): dict(irregular=dict(min_times=1, max_times=5, max_width=100, max_angle=4, max_len=200),
                         box=dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3)),
    ("thick", 512): dict(irregular=dict(min_times=1, max_times=5, max_width=250, max_angle=4, max_len=450),
                         box=dict(margin=10, bbox_min_size=30, bbox_max_size=300, min_times=1, max_times=4)),
}
LAMA_BOX_PROBA = 0.3
LAMA_MAX_AREA = 0.5


def _lama_irregular(rng, height, width, min_times, max_times, max_width, max_angle, max_len, min_width=5, min_len=10):
    mask = np.zeros((height, width), np.uint8)
    # LaMa's generator raises its max_times by one before drawing (``min_times + 1 + (max - min) * coef``
    # with coef 1), so up to max_times + 1 strokes are drawn; kept for parity.
    for i in range(int(rng.integers(min_times, max_times + 2))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(max_angle))  # whole radians, as in LaMa
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = min_len + int(rng.integers(max_len))
            brush = min_width + int(rng.integers(max_width))
            nx = int(np.clip(int(x + length * np.sin(angle)), 0, width))
            ny = int(np.clip(int(y + length * np.cos(angle)), 0, height))
            cv2.line(mask, (x, y), (nx, ny), 1, brush)
            x, y = nx, ny
    return mask


def _lama_boxes(rng, height, width, margin, bbox_min_size, bbox_max_size, min_times, max_times):
    mask = np.zeros((height, width), np.uint8)
    top_size = min(bbox_max_size + 1, height - 2 * margin, width - 2 * margin)
    for _ in range(int(rng.integers(min_times, max_times + 1))):
        bw, bh = int(rng.integers(bbox_min_size, top_size)), int(rng.integers(bbox_min_size, top_size))
        x = int(rng.integers(margin, width - margin - bw + 1))
        y = int(rng.integers(margin, height - margin - bh + 1))
        mask[y : y + bh, x : x + bw] = 1
    return mask


def _scaled(params: dict, factor: float) -> dict:
    """Pixel sizes times ``factor``; counts and angles unchanged."""
    if factor == 1:
        return dict(params)
    counts = ("min_times", "max_times", "max_angle")
    return {k: v if k in counts else round(v * factor) if k == "margin" else max(1, round(v * factor))
            for k, v in params.items()}


def lama_mask(rng, height, width, preset="medium"):
    side = min(height, width)
    base = 256 if side <= 384 else 512
    config = LAMA_PRESETS[(preset, base)]
    factor = side / base
    irregular = _scaled({**config["irregular"], "min_width": 5, "min_len": 10}, factor)
    box = _scaled(config["box"], factor) if "box" in config else None
    for _ in range(10_000):
        use_box = box is not None and rng.uniform() < LAMA_BOX_PROBA / (1 + LAMA_BOX_PROBA)
        mask = _lama_boxes(rng, height, width, **box) if use_box else _lama_irregular(rng, height, width, **irregular)
        if 0 < mask.mean() <= LAMA_MAX_AREA:
            return mask.astype(np.float32)
    raise RuntimeError(f"LaMa {preset} masks at {height}x{width} keep exceeding {LAMA_MAX_AREA:.0%}")


@register_mask("lama_thin")
def lama_thin(rng, height, width):
    """LaMa's thin preset: many narrow strokes (5-14 px at 256, 5-24 px at 512)."""
    return lama_mask(rng, height, width, "thin")


@register_mask("lama_medium")
def lama_medium(rng, height, width):
    """LaMa's medium preset: strokes up to 54 px (256) / 104 px (512), or 1-5 boxes."""
    return lama_mask(rng, height, width, "medium")


@register_mask("lama_thick")
def lama_thick(rng, height, width):
    """LaMa's thick preset: wide strokes (up to 104 px at 256, 254 px at 512), or boxes."""
    return lama_mask(rng, height, width, "thick")


# MAT / CoModGAN free-form masks (fenglinglwb/MAT datasets/mask_generator_{256,512}[_small].py): boxes up
# to s/2 and up to s, then brush strokes; the counts below are the upper bounds of ``randint`` per file.
MAT_COUNTS = {("large", 512): (5, 3, 9), ("small", 512): (3, 2, 4),
              ("large", 256): (4, 2, 8), ("small", 256): (2, 2, 3)}


def _mat_brush(rng, s, max_tries, min_width=12, max_width=48, scale=1.0):
    mask = np.zeros((s, s), np.uint8)
    for _ in range(int(rng.integers(max_tries)) if max_tries > 0 else 0):
        brush_stroke(rng, mask, 4, 18, min_width, max_width, scale)
        # MAT's per-stroke PIL transposes are discarded (their result is never assigned): no flips here.
    if rng.uniform() > 0.5:
        mask = mask[::-1]
    if rng.uniform() > 0.5:
        mask = mask[:, ::-1]
    return mask


def mat_mask(rng, height, width, variant="large", min_ratio=0.0, max_ratio=1.0):
    """MAT's ``RandomMask``: union of random boxes and brush strokes on an s x s canvas (s = the shorter
    side; a non-square mask is cropped from it), drawn again until the hole ratio is strictly inside
    (min_ratio, max_ratio). Brush widths are 12-48 px at the canvas size of the official file (256 or 512)
    and scale with s elsewhere (chosen). Lines are drawn with OpenCV instead of PIL (chosen)."""
    s = max(height, width)
    base = 256 if s <= 384 else 512
    n_half, n_full, n_brush = MAT_COUNTS[(variant, base)]
    coef = min(min_ratio + max_ratio, 1.0)
    for _ in range(10_000):
        keep = np.ones((s, s), np.uint8)
        for max_tries, max_size in ((int(n_half * coef), s // 2), (int(n_full * coef), s)):
            for _ in range(int(rng.integers(max_tries)) if max_tries > 0 else 0):
                w, h = int(rng.integers(max_size)), int(rng.integers(max_size))
                x = int(rng.integers(-(w // 2), s - w + w // 2))
                y = int(rng.integers(-(h // 2), s - h + h // 2))
                keep[max(y, 0) : min(y + h, s), max(x, 0) : min(x + w, s)] = 0
        hole = np.maximum(1 - keep, _mat_brush(rng, s, int(n_brush * coef), scale=s / base))[:height, :width]
        ratio = hole.mean()
        if min_ratio < ratio < max_ratio:
            return np.ascontiguousarray(hole, dtype=np.float32)
    raise RuntimeError(f"MAT {variant} masks never fell inside ({min_ratio}, {max_ratio})")


@register_mask("mat_large")
def mat_large(rng, height, width, min_ratio=0.0, max_ratio=1.0):
    """MAT / CoModGAN "large" masks (also MAT's training masks)."""
    return mat_mask(rng, height, width, "large", min_ratio, max_ratio)


@register_mask("mat_small")
def mat_small(rng, height, width, min_ratio=0.0, max_ratio=1.0):
    """MAT "small" masks: fewer boxes and strokes than "large"."""
    return mat_mask(rng, height, width, "small", min_ratio, max_ratio)
