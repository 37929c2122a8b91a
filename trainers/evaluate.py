"""Evaluation: score models on fixed (image, mask) pairs, overall and per hole-ratio bucket; compare several.

    ev = evaluate([parse_entry("deepfill_v2,checkpoint=run.pt"), parse_entry("opencv_telea")], masks="liu")
    write_compare(ev, "runs/compare")

Pairs: pair ``k`` is (image ``k``, mask ``k mod M``), images resized (shorter side) and centre-cropped
to ``size`` and put on the 8-bit grid. By default there is one pair per image, scored with the first masks of
the set (a protocol's masks do not depend on how many are drawn, see ``data.mask_sets``); ``pairs`` sets
the count: with fewer images, image ``k * I // pairs`` (blocks of consecutive pairs), with fewer masks,
mask ``k mod M`` (HINT's fixed pairing). With the embedded photos (no ``data``) the default is
``EMBEDDED_PAIRS`` pairs: the 2 held-out photos with 6 masks each.

Models: a registered preset, loaded with ``zoo.load`` (widths from the training checkpoint's config, or
given) and run through ``zoo.inpaint`` (padded to the size multiple, composited; conditioned presets get
their recipe's condition of the ground truth, e.g. mhtma_sketch its sketch), or a classical baseline
from ``BASELINES`` (OpenCV Telea / Navier-Stokes, the mean colour of the known pixels), so every leaderboard
has a floor. The baselines live in
this table and not in ``zoo.registry``: they have no generator to train, no recipe and no discriminator,
and the registry's contract tests treat every preset as a GAN.

Determinism: masks come from seeds and are checked against their hashes, each batch runs under a torch
seed derived from its first pair index (stochastic generators such as MAT draw the same noise every time;
a different batch size changes that noise), KID subsets are seeded and LinearSVC's primal solver is
deterministic: the same command gives the same numbers.
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from data.images import load_image, resolve_source, sha256
from data.mask_sets import PROTOCOLS, MaskSet, check_reference, load_mask_set, protocol_set
from trainers import metrics as M
from zoo.errors import ZooError

EMBEDDED_PAIRS = 12
BASELINE_RADIUS = 3  # px around each hole pixel that OpenCV's inpainting looks at (OpenCV's example value)
OPENCV_METHODS = {"opencv_telea": cv2.INPAINT_TELEA, "opencv_ns": cv2.INPAINT_NS}
FORMAT = "inpaint-zoo-eval/1"


# ---------------------------------------------------------------- models and baselines


@dataclass
class Entry:
    """One thing to evaluate: a preset or a baseline, an optional checkpoint and width overrides."""

    name: str
    checkpoint: str | None = None
    label: str | None = None
    overrides: dict = field(default_factory=dict)
    width: int | None = None


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
        if key == "checkpoint":
            entry.checkpoint = value
        elif key == "label":
            entry.label = value
        elif key == "width":
            entry.width = int(value) if value.isdigit() else _literal(value)
        else:
            entry.overrides[key] = _literal(value)
    return entry


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
    """``zoo.load`` (which rebuilds a zoo training checkpoint with its own widths), plus ``entry``'s width
    and overrides, which win."""
    from zoo.api import load
    from zoo.registry import UnknownModelError, get_preset

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


# name -> fill(image, mask): classical baselines, scored like models
BASELINES = {**{name: functools.partial(opencv_inpaint, method=method) for name, method in OPENCV_METHODS.items()},
             "mean_fill": mean_fill}


class Inpainter:
    """A loaded model or baseline: ``inpainter(image, mask, seed)`` returns the completed images (CPU)."""

    def __init__(self, entry: Entry, device="cpu"):
        self.entry, self.device = entry, torch.device(device)
        if entry.name in BASELINES:
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
            return BASELINES[self.entry.name](image, mask)
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


# ---------------------------------------------------------------- pairs


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


# ---------------------------------------------------------------- real-image features (cached)


def cache_dir() -> Path:
    """``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/inpaint-zoo`` (``~/.cache/inpaint-zoo``)."""
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inpaint-zoo"


def real_features(plan: Pairs, size: int, extractor: M.InceptionFeatures, batch_size: int,
                  progress: bool = True) -> tuple[np.ndarray, bool]:
    """Inception features of the images used (in image order), cached per (image list and contents,
    resolution, crop, extractor file hash). Returns (features, whether they came from the cache)."""
    used = [plan.images[i] for i in range(min(len(plan.images), plan.count))]
    key = hashlib.sha256(json.dumps({"images": [sha256(p) for p in used], "size": size,
                                     "crop": "resize-shorter-antialias/center", "extractor": extractor.hash})
                         .encode()).hexdigest()
    path = cache_dir() / "real_features" / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path), True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    chunks = []
    for start in tqdm(range(0, len(used), batch_size), desc="real features", unit="batch", disable=not progress):
        batch = torch.stack([load_eval_image(str(p), size) for p in used[start : start + batch_size]])
        chunks.append(extractor(batch.float() / 255))
    features = np.concatenate(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    np.save(tmp, features)
    os.replace(tmp, path)
    return features, False


# ---------------------------------------------------------------- the evaluation loop


@dataclass
class Evaluation:
    """What ``evaluate`` measured: per-model summaries and per-pair values, plus example images."""

    plan: Pairs
    settings: dict
    models: dict  # label -> Inpainter.describe()
    results: dict  # label -> {"overall": ..., "buckets": ...}
    per_pair: dict  # label -> {metric: np.ndarray}
    seconds: dict  # label -> seconds per image (model time only)
    skipped: dict  # metric -> reason
    extractors: dict
    reference: str
    examples: dict = field(default_factory=dict)  # pair index -> {"input", "target", label: completed}

    def result_json(self, label: str) -> dict:
        plan = self.plan
        return {
            "format": FORMAT,
            "model": self.models[label],
            "settings": self.settings,
            "data": {"source": plan.source, "images": len(plan.images),
                     "image_list_sha256": hashlib.sha256("\n".join(map(str, plan.images)).encode()).hexdigest()},
            "masks": {"name": plan.masks.name, **plan.masks.source, "size": plan.masks.height,
                      "count": len(plan.masks), "sha256": plan.masks.sha256, "reference": self.reference},
            "pairs": {"count": plan.count, "notes": plan.notes},
            "extractors": self.extractors,
            "skipped": self.skipped,
            "overall": self.results[label]["overall"],
            "buckets": self.results[label]["buckets"],
            "timing": {"seconds_per_image": self.seconds[label]},
        }


def _pick_examples(plan: Pairs, per_bucket: int) -> list[int]:
    chosen, taken = [], defaultdict(int)
    for k in range(plan.count):
        b = plan.bucket(k)
        if taken[b] < per_bucket:
            chosen.append(k)
            taken[b] += 1
    return chosen


def _build_extractors(wanted, size, device, inception_weights, lpips_weights, lpips_net, log):
    skipped, info, lpips, inception = {}, {}, None, None
    if set(wanted) & set(M.LPIPS_METRICS):
        lpips = M.LPIPS(lpips_net, lpips_weights, device)
        if lpips.path is None:
            names = [m for m in wanted if m in M.LPIPS_METRICS]
            skipped.update({m: lpips.missing for m in names})
            log(f"skipped {', '.join(names)}: {lpips.missing}")
            lpips = None
        else:
            info["lpips"] = {"network": lpips_net, "file": str(lpips.path), "sha256": lpips.hash}
    if set(wanted) & set(M.SET_METRICS):
        inception = M.InceptionFeatures(inception_weights, device)
        if inception.path is None:
            names = [m for m in wanted if m in M.SET_METRICS]
            skipped.update({m: inception.missing for m in names})
            log(f"skipped {', '.join(names)}: {inception.missing}")
            inception = None
        else:
            info["inception"] = {"file": str(inception.path), "sha256": inception.hash}
    if "ms_ssim" in wanted and size < M.MS_SSIM_MIN_SIDE:
        skipped["ms_ssim"] = f"needs images larger than {M.MS_SSIM_MIN_SIDE - 1} px (evaluating at {size})"
    return lpips, inception, skipped, info


def evaluate(entries: list[Entry], data=None, split: str = "test", masks: str = "liu", size: int = 256,
             pairs: int | None = None, seed: int = 0, batch_size: int = 8, device: str = "cpu",
             metrics=M.ALL_METRICS, inception_weights=None, lpips_weights=None, lpips_net: str = "alex",
             examples: int = 4, hole: str = "white", progress: bool = True, log=print) -> Evaluation:
    """Score every entry on the same pairs. Missing extractor weights skip their metrics (with a message)."""
    wanted = tuple(metrics)
    unknown = [m for m in wanted if m not in M.ALL_METRICS]
    if unknown:
        raise ZooError(f"unknown metrics {unknown}; known: {', '.join(M.ALL_METRICS)}")
    if batch_size < 1:
        raise ZooError("--batch-size must be at least 1")
    if size < 16:
        raise ZooError(f"--size {size} is too small (at least 16)")
    entries = assign_labels(list(entries))
    plan = plan_pairs(data, split, masks, size, pairs, seed, hole)
    for note in plan.notes:
        log(f"note: {note}")
    reference = check_reference(plan.masks) if plan.masks.source.get("protocol") in PROTOCOLS else "user masks"
    inpainters = [Inpainter(e, device) for e in entries]
    lpips, inception, skipped, extractor_info = _build_extractors(wanted, size, device, inception_weights,
                                                                  lpips_weights, lpips_net, log)
    real = None
    if inception is not None:
        unique, cached = real_features(plan, size, inception, batch_size, progress)
        real = unique[[plan.image_index(k) for k in range(plan.count)]]
        extractor_info["inception"]["real_features"] = "cache" if cached else "computed"

    per_pair = {e.label: defaultdict(list) for e in entries}
    fake = {e.label: [] for e in entries}
    seconds = dict.fromkeys(per_pair, 0.0)
    shown = set(_pick_examples(plan, examples))
    example_images = {}
    batches = range(0, plan.count, batch_size)
    for start in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        ks = list(range(start, min(start + batch_size, plan.count)))
        target, mask = load_batch(plan, ks, size)
        image = target * 2 - 1
        for inp in inpainters:
            t0 = time.perf_counter()
            completed = inp(image, mask, seed=seed * 1_000_003 + start)
            seconds[inp.entry.label] += time.perf_counter() - t0
            pred = M.quantize(completed)
            values = M.pixel_metrics(pred, target, mask)
            if lpips is not None:
                values.update(lpips(pred, target, mask))
            for name, v in values.items():
                per_pair[inp.entry.label][name].append(v.numpy())
            if inception is not None:
                fake[inp.entry.label].append(inception(pred))
            for i, k in enumerate(ks):
                if k in shown:
                    ex = example_images.setdefault(k, {"input": image[i] * (1 - mask[i]) + mask[i],
                                                       "target": image[i], "bucket": plan.bucket(k)})
                    ex[inp.entry.label] = pred[i] * 2 - 1

    buckets = [plan.bucket(k) for k in range(plan.count)]
    results, arrays = {}, {}
    for label, values in per_pair.items():
        arrays[label] = {name: np.concatenate(v) for name, v in values.items() if name in wanted}
        fake_features = np.concatenate(fake[label]) if inception is not None else None
        results[label] = M.summarize(arrays[label], buckets, plan.masks.labels, real, fake_features,
                                     [m for m in wanted if m not in skipped])
        seconds[label] = round(seconds[label] / plan.count, 4)
    settings = {"size": size, "split": split, "seed": seed, "batch_size": batch_size, "metrics": list(wanted),
                "lpips_net": lpips_net, "hole": hole}
    return Evaluation(plan, settings, {i.entry.label: i.describe() for i in inpainters}, results, arrays, seconds,
                      skipped, extractor_info, reference, example_images)


# ---------------------------------------------------------------- writing results


def _filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _columns(ev: Evaluation, labels) -> list[str]:
    """Metrics with at least one value, in the canonical order."""
    cols = []
    for m in M.ALL_METRICS:
        for label in labels:
            res = ev.results[label]
            if res["overall"].get(m) is not None or any(b.get(m) is not None for b in res["buckets"].values()):
                cols.append(m)
                break
    return cols


def _arrow(m: str) -> str:
    return "↑" if m in M.HIGHER_IS_BETTER else "↓"


def _header(ev: Evaluation) -> list[str]:
    plan = ev.plan
    lines = [f"- data: {plan.source} ({len(plan.images)} images, split `{ev.settings['split']}`), "
             f"{ev.settings['size']}x{ev.settings['size']}",
             f"- masks: {plan.masks.name} ({len(plan.masks)} masks, sha256 `{plan.masks.sha256[:16]}`, "
             f"reference check: {ev.reference}), {plan.count} pairs, seed {ev.settings['seed']}"]
    lines += [f"- note: {n}" for n in plan.notes]
    reasons = defaultdict(list)
    for m, why in ev.skipped.items():
        reasons[why].append(m)
    lines += [f"- skipped {', '.join(ms)}: {why}" for why, ms in reasons.items()]
    return lines


def eval_markdown(ev: Evaluation, label: str) -> str:
    cols = _columns(ev, [label])
    res = ev.results[label]
    lines = [f"# {label}: evaluation", "", *_header(ev), "",
             "| bucket | n | " + " | ".join(f"{M.TITLES[m]} {_arrow(m)}" for m in cols) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |"]
    rows = [("all", res["overall"])] + list(res["buckets"].items())
    for name, row in rows:
        lines.append(f"| {name} | {row['n']} | " + " | ".join(M.format_value(m, row.get(m)) for m in cols) + " |")
    lines += ["", f"Model time: {ev.seconds[label]} s per image."]
    return "\n".join(lines) + "\n"


def _per_pair_csv(ev: Evaluation, label: str, path: Path) -> None:
    plan, values = ev.plan, ev.per_pair[label]
    names = [m for m in M.ALL_METRICS if m in values]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pair", "image", "mask", "hole_ratio", "bucket", *names])
        for k in range(plan.count):
            entry = plan.masks.entries[plan.mask_index(k)]
            w.writerow([k, plan.images[plan.image_index(k)].name, plan.mask_index(k), entry["hole_ratio"],
                        entry["bucket"], *(f"{values[m][k]:.6g}" for m in names)])


def _grid(rows: list[list[torch.Tensor]], header: list[str] | None = None) -> np.ndarray:
    """H x W x 3 uint8 image of ``rows`` of [-1, 1] tensors, with an optional text header per column."""
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    tiles = torch.stack([t for row in rows for t in row]).clamp(-1, 1)
    grid = make_grid(tiles, nrow=len(rows[0]), padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if not header:
        return array
    tile = tiles.shape[-1] + 2
    band = Image.new("RGB", (array.shape[1], 14), "white")
    draw = ImageDraw.Draw(band)
    for i, text in enumerate(header):
        draw.text((i * tile + 4, 1), text[: max(4, tile // 6)], fill="black")
    return np.concatenate([np.asarray(band), array])


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{path.name}")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_eval(ev: Evaluation, out) -> Path:
    """results.json, results.md, per_pair.csv, masks.json and examples/<bucket>.png (input | output | target)."""
    (label,) = ev.results
    out = Path(out)
    _write_text(out / "results.json", json.dumps(ev.result_json(label), indent=1))
    _write_text(out / "results.md", eval_markdown(ev, label))
    _write_text(out / "masks.json", json.dumps(ev.plan.masks.manifest(), indent=1))
    _per_pair_csv(ev, label, out / "per_pair.csv")
    by_bucket = defaultdict(list)
    for k in sorted(ev.examples):
        ex = ev.examples[k]
        by_bucket[ex["bucket"]].append([ex["input"], ex[label], ex["target"]])
    for bucket, rows in by_bucket.items():
        _save_png(_grid(rows, ["input", label, "target"]), out / "examples" / f"bucket_{_filename(str(bucket))}.png")
    return out


def leaderboard_markdown(ev: Evaluation) -> str:
    labels = list(ev.results)
    cols = _columns(ev, labels)

    def best(values, m):
        present = [v for v in values if v is not None]
        if len(present) < 2:
            return None
        return max(present) if m in M.HIGHER_IS_BETTER else min(present)

    lines = ["# Leaderboard", "", *_header(ev), "",
             "| model | params | " + " | ".join(f"{M.TITLES[m]} {_arrow(m)}" for m in cols) + " | s/img |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " | ---: |"]
    tops = {m: best([ev.results[lb]["overall"].get(m) for lb in labels], m) for m in cols}
    for lb in labels:
        row = ev.results[lb]["overall"]
        cells = []
        for m in cols:
            text = M.format_value(m, row.get(m))
            cells.append(f"**{text}**" if row.get(m) is not None and row.get(m) == tops[m] else text)
        params = ev.models[lb]["parameters"]
        lines.append(f"| {lb} | {params / 1e6:.2f}M | " + " | ".join(cells) + f" | {ev.seconds[lb]} |"
                     if params else f"| {lb} | - | " + " | ".join(cells) + f" | {ev.seconds[lb]} |")
    buckets = [b for b in ev.plan.masks.labels if any(b in ev.results[lb]["buckets"] for lb in labels)]
    if buckets:
        lines += ["", "## By hole ratio", ""]
        counts = [ev.results[labels[0]]["buckets"].get(b, {}).get("n", 0) for b in buckets]
        lines.append("Pairs per bucket: " + ", ".join(f"{b}: {n}" for b, n in zip(buckets, counts)) + ".")
        for m in cols:
            lines += ["", f"### {M.TITLES[m]} {_arrow(m)}", "", "| model | " + " | ".join(buckets) + " |",
                      "| --- | " + " | ".join("---:" for _ in buckets) + " |"]
            for lb in labels:
                lines.append(f"| {lb} | " + " | ".join(
                    M.format_value(m, ev.results[lb]["buckets"].get(b, {}).get(m)) for b in buckets) + " |")
    return "\n".join(lines) + "\n"


def _leaderboard_csv(ev: Evaluation, path: Path) -> None:
    labels = list(ev.results)
    cols = _columns(ev, labels)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "bucket", "n", *cols, "seconds_per_image", "parameters"])
        for lb in labels:
            rows = [("all", ev.results[lb]["overall"])] + list(ev.results[lb]["buckets"].items())
            for bucket, row in rows:
                w.writerow([lb, bucket, row["n"], *("" if row.get(m) is None else f"{row[m]:.6g}" for m in cols),
                            ev.seconds[lb], ev.models[lb]["parameters"]])


def plot_metrics(ev: Evaluation, path: Path) -> Path | None:
    """One panel per metric: its value per hole-ratio bucket, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(ev.results)
    buckets = [b for b in ev.plan.masks.labels if any(b in ev.results[lb]["buckets"] for lb in labels)]
    cols = [m for m in _columns(ev, labels)
            if any(ev.results[lb]["buckets"].get(b, {}).get(m) is not None for lb in labels for b in buckets)]
    if not buckets or not cols:
        return None
    ncols = min(3, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, cols):
        for lb in labels:
            ys = [ev.results[lb]["buckets"].get(b, {}).get(m) for b in buckets]
            ax.plot(range(len(buckets)), [np.nan if y is None else y for y in ys], marker="o", label=lb)
        ax.set_xticks(range(len(buckets)), buckets, rotation=30, fontsize=8)
        ax.set_title(f"{M.TITLES[m]} {_arrow(m)}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("hole-to-image ratio")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{path.name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_compare(ev: Evaluation, out) -> Path:
    """leaderboard.md / .csv, metrics_vs_hole_ratio.png, side_by_side.png, masks.json, results/<label>.json."""
    out = Path(out)
    labels = list(ev.results)
    _write_text(out / "leaderboard.md", leaderboard_markdown(ev))
    out.mkdir(parents=True, exist_ok=True)
    _leaderboard_csv(ev, out / "leaderboard.csv")
    plot_metrics(ev, out / "metrics_vs_hole_ratio.png")
    _write_text(out / "masks.json", json.dumps(ev.plan.masks.manifest(), indent=1))
    for lb in labels:
        _write_text(out / "results" / f"{_filename(lb)}.json", json.dumps(ev.result_json(lb), indent=1))
    first_per_bucket, seen = [], set()
    for k in sorted(ev.examples):
        if ev.examples[k]["bucket"] not in seen:
            seen.add(ev.examples[k]["bucket"])
            first_per_bucket.append(k)
    if first_per_bucket:
        rows = [[ev.examples[k]["input"], *(ev.examples[k][lb] for lb in labels), ev.examples[k]["target"]]
                for k in first_per_bucket]
        _save_png(_grid(rows, ["input", *labels, "target"]), out / "side_by_side.png")
    return out


def default_out(kind: str, name: str) -> Path:
    return Path("runs") / f"{kind}-{_filename(name)}-{datetime.now():%Y%m%d-%H%M%S}"
