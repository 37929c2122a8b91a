"""What is evaluated: a registered preset (with an optional checkpoint and width) or a classical baseline.

A preset is loaded with ``zoo.load`` (widths from the training checkpoint's config, or given) and run
through ``zoo.inpaint`` (padded to the size multiple, composited; conditioned presets get their recipe's
condition of the ground truth, e.g. mhtma_sketch its sketch). A baseline from ``BASELINES`` (OpenCV Telea /
Navier-Stokes) gives every leaderboard a floor. The baselines live in this table and not in
``zoo.registry``: they have no generator to train, no recipe and no discriminator, and the registry's
contract tests treat every preset as a GAN.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from trainers import metrics as M
from zoo.errors import ZooError

BASELINE_RADIUS = 3  # px around each hole pixel that OpenCV's inpainting looks at (OpenCV's example value)


@dataclass
class Entry:
    """One thing to evaluate: a preset or a baseline, an optional checkpoint and width overrides."""

    name: str
    checkpoint: str | None = None
    label: str | None = None
    overrides: dict = field(default_factory=dict)
    width: int | None = None
    onnx: str | None = None  # an exported ONNX file (zoo export), run by onnxruntime instead of PyTorch


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_entry(text: str) -> Entry:
    """``NAME[,checkpoint=PATH][,label=TEXT][,width=W][,KEY=VALUE ...]`` (KEY=VALUE reach the model factory)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    usage = "NAME[,checkpoint=PATH][,label=TEXT][,width=W][,KEY=VALUE]"
    if not parts or "=" in parts[0]:
        raise ZooError(f"model entry {text!r} must start with a model name: {usage}")
    entry = Entry(parts[0])
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ZooError(f"model entry {text!r}: {part!r} is not KEY=VALUE ({usage})")
        if key in ("checkpoint", "weights"):  # any SOURCE zoo.load takes
            entry.checkpoint = value
        elif key == "label":
            entry.label = value
        elif key == "width":
            entry.width = int(value) if value.isdigit() else _literal(value)
        else:
            entry.overrides[key] = _literal(value)
    return entry


def assign_labels(entries: list[Entry]) -> list[Entry]:
    """Every entry gets a distinct label: the given one, else the name (+ checkpoint stem, + a number)."""
    seen = set()
    for entry in entries:
        base = entry.label or entry.name
        if entry.label is None and sum(e.name == entry.name for e in entries) > 1 and entry.checkpoint:
            base = f"{entry.name}-{Path(entry.checkpoint).stem}"
        label, i = base, 2
        while label in seen:
            label, i = f"{base}-{i}", i + 1
        entry.label = label
        seen.add(label)
    return entries


# ---------------------------------------------------------------- classical baselines


def opencv_inpaint(image: torch.Tensor, mask: torch.Tensor, method: int) -> torch.Tensor:
    """OpenCV's classical inpainting on each 8-bit image, composited like every model's output."""
    from zoo.contract import composite

    filled = []
    for img, hole in zip(image, mask):
        known = img * (1 - hole)  # like every generator, the baseline never sees hole pixels
        rgb = np.ascontiguousarray(M.to_uint8(M.quantize(known)).permute(1, 2, 0).numpy())
        hole8 = (hole[0].numpy() > 0.5).astype(np.uint8) * 255
        out = cv2.inpaint(rgb, hole8, BASELINE_RADIUS, method)
        filled.append(torch.from_numpy(out).permute(2, 0, 1).float() / 127.5 - 1)
    return composite(image, torch.stack(filled), mask)


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial floor: every hole pixel gets the mean colour of its image's known pixels (8-bit grid)."""
    from zoo.contract import composite

    known = (M.quantize(image * (1 - mask)) * 2 - 1) * (1 - mask)  # the hole pixels are never read
    count = (1 - mask).sum(dim=(2, 3), keepdim=True)
    mean = known.sum(dim=(2, 3), keepdim=True) / count.clamp(min=1)  # an all-hole image gets grey (0)
    return composite(image, mean.expand_as(image), mask)


# Name -> ``fill(image, mask) -> completed`` (N x 3 x H x W in [-1, 1], composited; it must not read the
# hole pixels). A new baseline is one line here.
BASELINES = {
    "opencv_telea": functools.partial(opencv_inpaint, method=cv2.INPAINT_TELEA),
    "opencv_ns": functools.partial(opencv_inpaint, method=cv2.INPAINT_NS),
    "mean_fill": mean_fill,
}


# ---------------------------------------------------------------- models


def _checkpoint_file(path) -> Path:
    """A run directory stands for its newest checkpoint."""
    from trainers.checkpoint import list_checkpoints

    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise ZooError(f"no checkpoints in {path / 'checkpoints'}")
        return found[-1]
    return path


def load_model(entry: Entry, device="cpu") -> torch.nn.Module:
    """The generator an entry names: ``zoo.load`` (which rebuilds a zoo training checkpoint with its own
    widths), plus ``entry``'s width and overrides, which win."""
    from zoo.api import load
    from zoo.registry import UnknownModelError, get_preset

    if entry.onnx:
        from zoo.export import OnnxGenerator

        return OnnxGenerator(entry.onnx, device)
    try:
        preset = get_preset(entry.name)
    except UnknownModelError as exc:
        raise ZooError(f"{exc}; baselines: {', '.join(BASELINES)}") from None
    kwargs = dict(entry.overrides)
    if entry.width is not None:
        kwargs.setdefault(preset.width_arg, entry.width)
    checkpoint = _checkpoint_file(entry.checkpoint) if entry.checkpoint is not None else None
    try:
        return load(entry.name, checkpoint, device=device, **kwargs)
    except TypeError as exc:
        raise ZooError(f"{entry.name} does not accept these settings {kwargs}: {exc}") from None


class Inpainter:
    """A loaded model or baseline: ``inpainter(image, mask, seed)`` returns the completed images (CPU)."""

    def __init__(self, entry: Entry, device="cpu"):
        self.entry, self.device = entry, torch.device(device)
        self.fill = BASELINES.get(entry.name)
        if self.fill is not None:
            if entry.checkpoint or entry.overrides or entry.width:
                raise ZooError(f"{entry.name} is a classical baseline: it takes no checkpoint or settings")
            self.model, self.parameters, self.kind, self.condition = None, 0, "baseline", None
        else:
            from zoo.registry import get_preset

            self.model = load_model(entry, device)
            self.parameters = sum(p.numel() for p in self.model.parameters())
            self.kind = "model"
            # Conditioned presets (mhtma_sketch) get what their recipe builds from the ground truth, as in
            # their papers' evaluations (the sketch of the true image inside the hole).
            self.condition = get_preset(entry.name).recipe.condition

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        from zoo.api import inpaint

        if self.model is None:
            return self.fill(image, mask)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            conditioning = self.condition(image, mask) if self.condition is not None else {}
            return inpaint(self.model, image, mask, **conditioning).cpu()

    def describe(self) -> dict:
        condition = self.condition
        return {"label": self.entry.label, "name": self.entry.name, "kind": self.kind,
                "checkpoint": self.entry.checkpoint, "width": self.entry.width, "overrides": self.entry.overrides,
                "parameters": self.parameters, "conditioning": None if condition is None else condition.__name__}
