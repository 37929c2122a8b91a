"""README's multi-process launch line works from a working directory whose ``data.py`` would shadow ours.

``torchrun -m zoo.cli`` puts the working directory first on ``sys.path``, so a user's ``data.py`` (or
``data/``) replaces the installed ``data`` package; launching the console script (``torchrun --no-python
zoo``) keeps the working directory off ``sys.path``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainers.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ZOO = shutil.which("zoo", path=str(Path(sys.executable).parent)) or shutil.which("zoo")
TRAIN = ["train", "--model", "deepfill_v2", "--width", "8", "--size", "32", "--batch-size", "2",
         "--max-steps", "1", "--tracker", "none", "--workers", "0", "--cpu", "--set", "save_every=1"]


def torchrun(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(ZOO is None, reason="the zoo console script is not installed (pip install -e .)")
def test_two_process_launch_from_a_directory_with_a_data_module(tmp_path):
    (tmp_path / "data.py").write_text("raise ImportError('the working directory data.py shadowed the zoo')\n")
    # the launch line of README: the console script, not -m zoo.cli
    result = torchrun("--no-python", ZOO, *TRAIN, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    state = read_checkpoint(tmp_path / "run")
    assert state["step"] == 1 and len(state["process_fingerprints"]) == 2
    # the old line breaks in the same directory, which is what this test guards against
    old = torchrun("-m", "zoo.cli", *TRAIN, "--out", str(tmp_path / "old"), cwd=tmp_path)
    assert old.returncode != 0 and "shadowed the zoo" in old.stderr
