"""Run directories and training checkpoints.

A run directory is claimed atomically before any set-up (its ``config.yaml`` is published with a hard link,
which fails if another run got there first) and locked while a process trains in it. Checkpoints are one
file per save, written atomically (temp file + rename) after a free-space check; a failed or interrupted
save removes its temporary file, and stale ones from killed runs are removed when a run starts or resumes.

A checkpoint holds G, D, the EMA of G, both optimisers, the step, the number of batches consumed and the
RNG states of every process, plus the resolved config, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch
import yaml
from filelock import FileLock, Timeout

from zoo.checkpoint_format import FORMAT, REQUIRED_KEYS
from zoo.checkpoint_format import STEP_FILE as _NAME
from zoo.errors import CheckpointError, DiskFullError, ZooError

CONFIG = "config.yaml"
SPARE_BYTES = 1 << 20  # beyond the estimate: the zip container's directory and slack


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("step_*.pt") if _NAME.search(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def _state_bytes(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 0


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def save_checkpoint(state: dict, run_dir, step: int, keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``step`` and keep the newest ``keep`` (0 = all).

    Refuses up front when the disk has less free space than the last checkpoint's size; a full disk or an
    interrupt during the write removes the temporary file, so the previous checkpoints stay and no space
    is lost.
    """
    path = checkpoint_path(run_dir, step)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    previous = list_checkpoints(run_dir)
    check_free_space(path, previous[-1].stat().st_size if previous else _state_bytes(state), previous)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, path)  # a crash before this line leaves the previous checkpoints untouched
    except BaseException as exc:  # also KeyboardInterrupt and a second stop signal: never leave a partial file
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            raise _write_error(path, exc, previous) from None
        raise
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def check_free_space(path: Path, size: int, previous=()) -> None:
    """Refuse to start writing ``path`` (about ``size`` bytes) on a disk that cannot hold it."""
    folder = next(p for p in (path.parent, *path.parents) if p.exists())
    needed, free = size + SPARE_BYTES, shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFullError(f"no space left on device for {path}: needs about {_mb(needed)}, {_mb(free)} free"
                            + (f"; the last checkpoint {previous[-1]} is intact" if previous else ""))


def _write_error(path, exc: Exception, previous=()) -> ZooError:
    """torch.save reports a full disk as ``RuntimeError: ... unexpected pos`` or ``file write failed``."""
    intact = f"; the last checkpoint {previous[-1]} is intact" if previous else ""
    full = getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc) or "write failed" in str(exc)
    if full:
        return DiskFullError(f"no space left on device writing {path}{intact}")
    return ZooError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}{intact}")


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


def remove_stale_temporaries(run_dir) -> list[Path]:
    """Delete the ``*.tmp`` files that killed saves left behind (each can be as large as a checkpoint)."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob("*.tmp"), *(run_dir / "checkpoints").glob("*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class RunDirectory:
    """A run directory owned by this training process: claimed atomically, locked until ``release``."""

    def __init__(self, path):
        self.path = Path(path)
        self.created: list[Path] = []
        self.claimed = False  # only the process that claimed the directory may undo the claim
        self._lock = None

    def claim(self, cfg: dict) -> RunDirectory:
        """Create (or take an empty) directory and publish ``config.yaml`` in it, atomically: of two runs
        started together with one ``--out``, exactly one succeeds. A run killed before its first
        checkpoint can then be resumed from step 0 with this config."""
        path = self.path
        missing = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True)
            self.created = missing  # removed again by a failed set-up, top last
        except FileExistsError:
            if not path.is_dir() or any(path.iterdir()):
                raise ZooError(f"run directory {path} already exists and is not empty; use --resume {path} "
                               "or another --out") from None
        except OSError as exc:
            raise ZooError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
        tmp = path / f"{CONFIG}.{os.getpid()}.tmp"
        try:
            tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
            os.link(tmp, path / CONFIG)  # fails if it exists: the atomic claim
        except FileExistsError:
            raise ZooError(f"run directory {path} was just claimed by another run; use another --out") from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._remove_created()
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(f"no space left on device writing {path / CONFIG}") from None
            raise ZooError(f"cannot write {path / CONFIG}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.claimed = True
        return self.lock()

    def lock(self) -> RunDirectory:
        """Hold ``run.lock`` while training: a second process (a resume, a racing run) is refused."""
        self._lock = FileLock(self.path / "run.lock")
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            self._lock = None
            raise ZooError(f"run directory {self.path} is in use by another training process") from None
        except OSError as exc:
            self._lock = None
            raise ZooError(f"cannot lock run directory {self.path}: {exc.strerror or exc}") from None
        remove_stale_temporaries(self.path)
        return self

    def release(self, undo_claim: bool = False) -> None:
        """Unlock; with ``undo_claim`` (set-up failed before any step) remove what the claim created."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if undo_claim and self.claimed:
            self._undo()

    def _undo(self) -> None:
        for name in (CONFIG, "run.lock"):
            (self.path / name).unlink(missing_ok=True)
        self._remove_created()

    def _remove_created(self) -> None:
        """Remove the folders the claim created (the run's and missing parents such as ``runs/``) if empty."""
        for folder in self.created or []:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
