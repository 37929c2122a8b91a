"""``evaluate``: every entry on the same pairs, batch by batch; per-pair metrics, summaries, example images."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from data.mask_sets import PROTOCOLS, check_reference
from trainers import metrics as M
from trainers.evaluation.features import build_extractors, real_features
from trainers.evaluation.models import Entry, Inpainter, assign_labels
from trainers.evaluation.pairs import Pairs, load_batch, pick_examples, plan_pairs
from zoo.errors import ZooError

FORMAT = "inpaint-zoo-eval/1"


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
    lpips, inception, skipped, extractor_info = build_extractors(wanted, size, device, inception_weights,
                                                                 lpips_weights, lpips_net, log)
    real = None
    if inception is not None:
        unique, cached = real_features(plan, size, inception, batch_size, progress)
        real = unique[[plan.image_index(k) for k in range(plan.count)]]
        extractor_info["inception"]["real_features"] = "cache" if cached else "computed"

    per_pair = {e.label: defaultdict(list) for e in entries}
    fake = {e.label: [] for e in entries}
    seconds = dict.fromkeys(per_pair, 0.0)
    shown = set(pick_examples(plan, examples))
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
