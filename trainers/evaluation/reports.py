"""The files ``zoo eval`` and ``zoo compare`` write: markdown tables, CSV, JSON, a plot and image grids.

Every file is written to a temporary name and moved into place, so a run that stops half-way leaves no
half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from trainers import metrics as M
from trainers.evaluation.loop import Evaluation
from zoo.errors import ZooError


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


def default_out(kind: str, name: str, root="runs") -> Path:
    """A new folder runs/KIND-NAME-TIMESTAMP, created here: two evaluations started in the same second get
    -2, -3, ... rather than writing their reports into one folder."""
    base = Path(root) / f"{kind}-{_filename(name)}-{datetime.now():%Y%m%d-%H%M%S}"
    Path(root).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ZooError(f"could not find a free output folder next to {base}")
