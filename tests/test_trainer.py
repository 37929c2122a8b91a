"""The trainer end to end on tiny DeepFill v2: run directory, exact resume, two CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trainers.checkpoint import list_checkpoints, read_checkpoint
from trainers.config import resolve_config
from trainers.trainer import train
from zoo.errors import CheckpointError, ZooError

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(out, sets=(), **flags):
    base = dict(size=32, batch_size=2, max_steps=4, out=str(out), tracker="none", workers=0)
    base.update(flags)
    return resolve_config("deepfill_v2", flags=base, width=8,
                          sets=["log_every=1", "sample_every=2", "save_every=2", "ema_kimg=0.01",
                                "deterministic=true", *sets])  # on a GPU, exact resume needs deterministic kernels


def test_run_directory_holds_config_checkpoint_samples_and_metrics(tmp_path):
    run = train(tiny_config(tmp_path / "run"))
    assert (run / "config.yaml").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == "deepfill_v2" and saved["model_kwargs"]["cnum"] == 8
    assert saved["recipe"]["adversarial"]["loss"] == "hinge"
    assert [p.name for p in list_checkpoints(run)] == ["step_0000002.pt", "step_0000004.pt"]
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step_0000002.png", "step_0000004.png"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"G/l1/0", "G/l1/1", "G/adv", "D/loss", "G/loss"} <= set(lines[0])
    state = read_checkpoint(run)
    assert state["step"] == 4 and state["G_ema"] is not None and state["batches"] == 4
    # the saved config reproduces the run's settings when passed back with --config
    again = resolve_config(config_file=run / "config.yaml")
    for key in ("model", "model_kwargs", "size", "batch_size", "recipe", "masks", "seed", "ema_kimg"):
        assert again[key] == saved[key]


@pytest.fixture(autouse=True)
def _restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)  # tiny_config turns it on for the whole process


def test_resume_continues_exactly(tmp_path):
    straight = train(tiny_config(tmp_path / "straight"))
    half = train(tiny_config(tmp_path / "half", max_steps=2))
    resumed = train(resume=str(half), max_steps=4)
    assert resumed == half
    a, b = read_checkpoint(straight), read_checkpoint(resumed)
    assert a["step"] == b["step"] == 4
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert a["opt_g"]["state"][0]["step"] == b["opt_g"]["state"][0]["step"]
    for x, y in zip(a["opt_g"]["state"].values(), b["opt_g"]["state"].values()):
        assert torch.equal(x["exp_avg"], y["exp_avg"])


def test_learning_rate_schedules_warm_up_then_decay_to_zero():
    from trainers.steps import learning_rate
    from zoo.registry import OptimSpec

    lr = lambda step, **kw: learning_rate(OptimSpec(lr=1e-3, **kw), step, max_steps=101)  # noqa: E731
    assert [lr(s) for s in (0, 50, 100)] == [1e-3] * 3
    assert [lr(s, warmup_steps=4) for s in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert lr(1, schedule="cosine") < 1e-3 and lr(101, schedule="cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr(51, schedule="cosine", warmup_steps=1) == pytest.approx(5e-4)  # half-way between warm-up and end
    assert lr(51, schedule="linear", warmup_steps=1) == pytest.approx(5e-4)
    assert lr(26, schedule="linear", warmup_steps=1, schedule_steps=51) == pytest.approx(5e-4)
    assert lr(80, schedule="linear", schedule_steps=51) == 0.0
    decay = [lr(s, schedule="cosine", warmup_steps=10) for s in range(10, 101)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_a_scheduled_run_logs_its_rate_and_resumes_on_the_same_curve(tmp_path):
    sets = ["recipe.optim_g.schedule=cosine", "recipe.optim_g.warmup_steps=1", "recipe.optim_g.schedule_steps=4",
            "recipe.optim_d.schedule=linear", "recipe.optim_d.schedule_steps=4"]
    straight = train(tiny_config(tmp_path / "straight", sets))
    rates = [json.loads(line)["lr/G"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    base = yaml.safe_load((straight / "config.yaml").read_text())["recipe"]["optim_g"]["lr"]
    # the rate each step used: 1 warm-up step, then cosine from step 1 to 0 at step 4
    assert rates == pytest.approx([base, base, base * 0.75, base * 0.25], abs=1e-12)
    half = train(tiny_config(tmp_path / "half", sets, max_steps=2))
    train(resume=str(half), max_steps=4)
    a, b = read_checkpoint(straight), read_checkpoint(half)
    for key in ("G", "D"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"


def test_existing_run_directory_and_corrupt_checkpoint_are_refused_without_damage(tmp_path):
    run = train(tiny_config(tmp_path / "run", max_steps=2))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ZooError, match="already exists"):
        train(tiny_config(run))
    newest = list_checkpoints(run)[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated checkpoint
    before[newest] = newest.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt"):
        train(resume=str(run), max_steps=4)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_interrupted_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    from trainers import checkpoint as ckpt

    run = train(tiny_config(tmp_path / "run", max_steps=2))
    good = read_checkpoint(run)

    def crash(obj, path):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"step": 9}, run, 9)
    assert read_checkpoint(run)["step"] == good["step"]


@pytest.mark.slow
def test_two_cpu_processes_stay_identical(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "zoo.cli", "train", "--model", "deepfill_v2", "--width", "8", "--size", "32",
           "--batch-size", "2", "--max-steps", "3", "--out", str(tmp_path / "ddp"), "--tracker", "none",
           "--workers", "0", "--cpu", "--set", "save_every=3", "--set", "log_every=1"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    state = read_checkpoint(tmp_path / "ddp")
    fingerprints = state["process_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    # two processes consumed 3 batches each
    assert state["batches"] == 3


@pytest.mark.parametrize("tracker", ["wandb", "tensorboard"])
def test_trackers_write_into_the_run_directory(tmp_path, monkeypatch, tracker):
    if tracker == "tensorboard":
        pytest.importorskip("tensorboard")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = train(tiny_config(tmp_path / "run", max_steps=2, tracker=tracker))
    if tracker == "wandb":
        assert list((run / "wandb").glob("offline-run-*"))
    else:
        assert list(run.rglob("events.out.tfevents.*"))
