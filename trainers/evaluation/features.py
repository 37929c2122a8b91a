"""The metric extractors (LPIPS, Inception-v3) and the cache of real-image Inception features.

A missing weights file skips only the metrics that need it, with a message naming the file. Real-image
features depend only on the images, the resolution and the extractor, so they are cached in
``$ZOO_CACHE`` and shared by every model scored on the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.images import sha256
from trainers import metrics as M
from trainers.evaluation.pairs import Pairs, load_eval_image


def build_extractors(wanted, size, device, inception_weights, lpips_weights, lpips_net, log):
    """(lpips or None, inception or None, skipped metric -> reason, extractor info for the results)."""
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
