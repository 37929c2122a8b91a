"""Evaluation: score models on fixed (image, mask) pairs, overall and per hole-ratio bucket; compare several.

    ev = evaluate([parse_entry("deepfill_v2,checkpoint=run.pt"), parse_entry("opencv_telea")], masks="liu")
    write_compare(ev, "runs/compare")

One module per concern, each readable on its own:

- ``models``: what is evaluated: entries (``NAME,checkpoint=...``), loading a preset, the classical baselines
  (``BASELINES``), and ``Inpainter``, which runs either the same way.
- ``pairs``: which (image, mask) pairs are scored and how their images are read.
- ``features``: the metric extractors (LPIPS, Inception) and the cache of real-image features.
- ``loop``: ``evaluate``, which runs every entry on the same pairs and summarises the metrics.
- ``reports``: the files ``zoo eval`` and ``zoo compare`` write (markdown, CSV, JSON, plots, image grids).

Determinism: masks come from seeds and are checked against their hashes, each batch runs under a torch
seed derived from its first pair index (stochastic generators such as MAT draw the same noise every time;
a different batch size changes that noise), KID subsets are seeded and LinearSVC's primal solver is
deterministic: the same command gives the same numbers.
"""

from trainers.evaluation.loop import Evaluation, evaluate
from trainers.evaluation.models import BASELINES, Entry, Inpainter, load_model, opencv_inpaint, parse_entry
from trainers.evaluation.pairs import Pairs, plan_pairs
from trainers.evaluation.reports import default_out, eval_markdown, leaderboard_markdown, write_compare, write_eval

__all__ = [
    "BASELINES",
    "Entry",
    "Evaluation",
    "Inpainter",
    "Pairs",
    "default_out",
    "eval_markdown",
    "evaluate",
    "leaderboard_markdown",
    "load_model",
    "opencv_inpaint",
    "parse_entry",
    "plan_pairs",
    "write_compare",
    "write_eval",
]
