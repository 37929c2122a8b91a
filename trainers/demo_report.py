"""The table a training run on the embedded photos ends with: the trained model against two trivial fills.

The same pairs ``zoo eval`` scores without ``--data`` (the 2 held-out embedded photos with 6 Liu masks
each) at the training size, so a user sees at once whether the run learned more than the mean colour of
the known pixels and where it stands against OpenCV's Telea inpainting. A few seconds at demo sizes.
"""

from __future__ import annotations

import yaml

from trainers import metrics as M
from trainers.checkpoint import list_checkpoints

METRICS = ("l1_hole", "psnr")
BASELINE_ROWS = ("mean_fill", "opencv_telea")


def heldout_table(run_dir, masks: str = "liu", device: str = "cpu") -> str | None:
    """Markdown table for the newest checkpoint of ``run_dir``; None if the run did not use the embedded photos."""
    from trainers.evaluation import Entry, evaluate

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    found = list_checkpoints(run_dir)
    if cfg.get("data") is not None or not found:
        return None
    step = int(found[-1].stem.split("_")[-1])
    label = f"{cfg['model']} (this run, step {step})"
    entries = [Entry(cfg["model"], str(found[-1]), label=label), *(Entry(name) for name in BASELINE_ROWS)]
    ev = evaluate(entries, masks=masks, size=cfg["size"], metrics=METRICS, device=device, examples=0,
                  progress=False, log=lambda *_: None)
    lines = [f"Held-out embedded photos ({', '.join(p.stem for p in ev.plan.images)}; {ev.plan.count} pairs, "
             f"{masks} masks, {cfg['size']} px; `zoo eval` without --data scores the same pairs):", "",
             "| model | " + " | ".join(f"{M.TITLES[m]} {'↑' if m in M.HIGHER_IS_BETTER else '↓'}"
                                     for m in METRICS) + " |",
             "| --- | " + " | ".join("---:" for _ in METRICS) + " |"]
    for row in ev.results:
        values = ev.results[row]["overall"]
        lines.append(f"| {row} | " + " | ".join(M.format_value(m, values.get(m)) for m in METRICS) + " |")
    return "\n".join(lines)
