"""Training checkpoints: one file per save, written atomically (temp file + rename).

A checkpoint holds G, D, the EMA of G, both optimisers, the step, the number of batches consumed and the
RNG states of every process, plus the resolved config, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from zoo.checkpoint_format import FORMAT, REQUIRED_KEYS
from zoo.checkpoint_format import STEP_FILE as _NAME
from zoo.errors import CheckpointError


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("step_*.pt") if _NAME.search(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def save_checkpoint(state: dict, run_dir, step: int, keep: int = 2) -> Path:
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)  # a crash before this line leaves the previous checkpoints untouched
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(path) -> dict:
    """Load a zoo training checkpoint or raise ``CheckpointError`` with one clear line."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"no checkpoints in {path / 'checkpoints'}")
        path = found[-1]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an inpaint-zoo training checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    state["path"] = str(path)
    return state
