"""The demo recipe: reconstruction warm-up before the adversarial term, the end-of-run table, the held-out set."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from trainers.config import resolve_config
from trainers.demo_report import heldout_table
from trainers.evaluation import Entry, evaluate
from trainers.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _zoo_train(*argv, cwd):
    """``zoo train ARGV`` in a subprocess, as a user runs it (one thread, no tracker upload)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "zoo.cli", "train", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_warmup_trains_reconstruction_only_then_adds_the_adversarial_term(tmp_path):
    cfg = resolve_config("deepfill_v2", flags=dict(size=32, batch_size=2, max_steps=4, out=str(tmp_path / "run"),
                                                   tracker="none", workers=0), width=8,
                         sets=["log_every=1", "save_every=4", "sample_every=100", "recipe.adversarial.warmup_steps=2"])
    rows = _metrics(train(cfg))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows[:2]:  # warm-up: no discriminator update, no adversarial term
        assert "D/loss" not in r and "G/adv" not in r
    for r in rows[2:]:
        assert "D/loss" in r and "G/adv" in r
        assert r["G/loss"] > r["G/l1/0"]  # the adversarial term now enters the generator loss


def test_train_ends_with_the_heldout_table(tmp_path):
    run = tmp_path / "run"
    result = _zoo_train("--model", "mhtma", "--width", "8", "--size", "64", "--batch-size", "1", "--max-steps", "2",
                        "--out", str(run), "--tracker", "none", "--workers", "0",
                        "--set", "model_kwargs.temperature_width=16", "--set", "recipe.discriminator_kwargs.cnum=8",
                        "--set", "recipe.losses.2.weight=0", "--set", "sample_every=100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [ln for ln in result.stdout.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["mhtma (this run, step 2)", "mean_fill", "opencv_telea"]
    values = {r.split("|")[1].strip(): [float(v) for v in r.split("|")[2:4]] for r in rows}
    assert all(0 < l1 < 100 and 5 < psnr < 100 for l1, psnr in values.values())
    # the baselines' rows are what `zoo eval` gives on the same pairs, and the table is repeatable
    ev = evaluate([Entry("mean_fill")], size=64, metrics=("l1_hole", "psnr"), progress=False, log=lambda *_: None)
    assert values["mean_fill"][0] == pytest.approx(ev.results["mean_fill"]["overall"]["l1_hole"], abs=0.006)
    assert heldout_table(run).splitlines()[-3:] == rows


def test_no_table_for_runs_on_other_data(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "a.png")
    cfg = resolve_config("deepfill_v2", flags=dict(data=str(folder), size=32, batch_size=1, max_steps=1,
                                                   out=str(tmp_path / "run"), tracker="none", workers=0), width=8)
    assert heldout_table(train(cfg)) is None


def test_heldout_photos_are_rebuilt_from_package_files(tmp_path):
    from tools.heldout_photos import build

    manifest = build(tmp_path / "set", side=64, log=lambda *_: None)  # scikit-learn's photos are always there
    names = [e["path"] for e in manifest["splits"]["test"]]
    assert {"china_full.png", "china_q00.png", "flower_q11.png"} <= set(names)
    assert len(names) % 5 == 0 and not manifest["splits"]["train"]
    with Image.open(tmp_path / "set" / "china_full.png") as full, Image.open(tmp_path / "set" / "china_q11.png") as q:
        assert full.size == (64, 64) and q.size == (32, 32)
    sources = json.loads((tmp_path / "set" / "sources.json").read_text())["photos"]
    assert all(s["licence"] and len(s["sha256"]) == 64 for s in sources)
    again = build(tmp_path / "again", side=64, log=lambda *_: None)
    assert [e["sha256"] for e in again["splits"]["test"]] == [e["sha256"] for e in manifest["splits"]["test"]]


def test_recoloured_validation_copies_keep_the_scene_and_change_its_colours(tmp_path):
    from data.images import default_images, read_split
    from tools.recoloured_val import COLOURINGS, build

    manifest = build(tmp_path / "set")
    paths = read_split(tmp_path / "set" / "split.json", "test", verify=True)
    assert len(paths) == len(manifest["splits"]["test"]) == len(COLOURINGS) * len(default_images("val"))
    with Image.open(default_images("val")[0]) as img:
        original = np.asarray(img.convert("RGB"), dtype=np.float32)
    as_is, turned = (np.asarray(Image.open(paths[i]), dtype=np.float32) for i in (0, 5))
    assert as_is.shape == turned.shape == original.shape
    assert np.abs(as_is - original).max() <= 1  # hue 0, saturation 1: the photo itself (8-bit rounding)
    assert np.abs(turned - original).mean() > 20  # half a turn of the hue circle: other colours
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert abs((turned @ luma).mean() - (original @ luma).mean()) < 20  # ... of about the same brightness


def _readme_train_commands():
    """The ``zoo train`` argument lists of README's main command and of its 30-minute recipe."""
    text = (ROOT / "README.md").read_text()
    main = text.split("<!-- main-command -->", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    recipe = text.split("The 30-minute recipe is", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands = [main.split("&& zoo train ", 1)[1], recipe.replace("\\\n", " ").split("zoo train ", 1)[1]]
    return [shlex.split(c) for c in commands]


@pytest.mark.parametrize("which", [0, 1], ids=["main-command", "30-minute-recipe"])
def test_readme_demo_commands_run_as_written(tmp_path, which):
    argv = _readme_train_commands()[which]
    settings = dict(argv[i + 1].split("=", 1) for i, flag in enumerate(argv) if flag == "--set")
    assert settings["masks"] == "liu_irregular"
    steps = int(argv[argv.index("--max-steps") + 1])
    assert int(settings["recipe.adversarial.warmup_steps"]) == steps  # the whole demo is reconstruction warm-up
    argv[argv.index("--max-steps") + 1] = "2"
    argv[argv.index("--out") + 1] = str(tmp_path / "run")
    result = _zoo_train(*argv, "--tracker", "none", "--workers", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (cfg["masks"], cfg["size"], cfg["model_kwargs"]["cnum"]) == ("liu_irregular", 64, 16)
    assert cfg["recipe"]["optim_g"]["lr"] == pytest.approx(1e-3) and cfg["ema_kimg"] == 1.0
    assert cfg["augment_kwargs"]["colour"] is True  # the embedded photos' palette is narrow
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows][-1] == 2 and not any("D/loss" in r for r in rows)
    assert "mhtma (this run, step 2)" in result.stdout  # the end-of-run table
