"""Fault drill: bad inputs, signals, a full disk and racing runs, met the way a user meets them.

Every case runs the installed ``zoo`` console script in a subprocess. A bad input must end with exit status 2
and one ``error:`` line on stderr (no traceback), and must leave every file as it was (compared by hash).
SIGTERM / SIGINT must save the step in progress and exit 143 / 130; resuming from it continues bit-exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from trainers.checkpoint import list_checkpoints, read_checkpoint
from trainers.config import resolve_config
from trainers.trainer import train

ZOO = str(Path(sys.executable).with_name("zoo"))
TINY_G = ["--model", "deepfill_v2", "--width", "4", "--size", "32", "--batch-size", "2", "--tracker", "none"]
TINY = [*TINY_G, "--set", "recipe.discriminator_kwargs.cnum=4"]  # checkpoints of ~0.7 MB
DRILL_TABLE = Path(os.environ.get("ZOO_DRILL_TABLE", "")) if os.environ.get("ZOO_DRILL_TABLE") else None


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "ZOO_OFFLINE": "1",
            "PYTHONWARNINGS": "ignore"}


def zoo(*args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([ZOO, *map(str, args)], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def start(*args, cwd, log: Path) -> subprocess.Popen:
    """A training process in its own process group (so that a group signal is what a terminal sends)."""
    return subprocess.Popen([ZOO, *map(str, args)], cwd=cwd, env=env(), stdout=open(log.with_suffix(".out"), "w"),
                            stderr=open(log.with_suffix(".err"), "w"), start_new_session=True)


def hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass  # being written
    return steps


def wait_for(predicate, timeout=240, what="condition", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tiny_cfg(out, max_steps, **sets):
    sets = {"log_every": 1, "save_every": 1000, "recipe.discriminator_kwargs.cnum": 4, **sets}
    return resolve_config("deepfill_v2", width=4, flags=dict(size=32, batch_size=2, max_steps=max_steps, out=str(out),
                                                             tracker="none", workers=0),
                          sets=[f"{k}={v}" for k, v in sets.items()])


def assert_same_training_state(a: dict, b: dict):
    assert a["step"] == b["step"] and a["batches"] == b["batches"]
    for key in ("G", "D"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    for x, y in zip(a["opt_g"]["state"].values(), b["opt_g"]["state"].values()):
        assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])


# ---- the workspace every bad input is tried against ------------------------------------------------------------

@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("drill")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(ws / "photo.png")
    hole = np.zeros((64, 64), np.uint8)
    hole[16:40, 16:40] = 255
    Image.fromarray(hole).save(ws / "mask.png")
    Image.fromarray(hole[:32, :32]).save(ws / "mask_small.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(ws / "mask_empty.png")
    (ws / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    (ws / "garbage.pt").write_bytes(b"not a checkpoint" * 20)
    (ws / "empty").mkdir()
    (ws / "notes.xyz").write_text("hello")
    (ws / "a_file").write_text("a plain file")
    (ws / "busy").mkdir()
    (ws / "busy" / "keep.txt").write_text("someone's results")
    (ws / "broken.yaml").write_text("model: [unclosed")
    (ws / "list.yaml").write_text("- 1\n- 2\n")
    (ws / "unknown.yaml").write_text("model: deepfill_v2\ncolour: red\n")
    (ws / "bad.json").write_text("{not json")
    photos = ws / "photos"
    photos.mkdir()
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"p{k}.png")
    train(tiny_cfg(ws / "run", 2, save_every=1))
    shutil.copytree(ws / "run", ws / "run_corrupt")
    newest = list_checkpoints(ws / "run_corrupt")[-1]
    newest.write_bytes(newest.read_bytes()[:200])
    (ws / "run" / "run.lock").unlink(missing_ok=True)
    return ws


CKPT = "{ws}/run/checkpoints/step_0000002.pt"

# ---- bad inputs ---------------------------------------------------------------------------------------------

CASES = [
    # zoo train
    ("train: unknown model", ["train", "--model", "nope"], "unknown model 'nope'"),
    ("train: unknown discriminator", ["train", *TINY, "--set", "recipe.discriminator=nope"], "unknown discriminator"),
    ("train: lr not a number", ["train", *TINY, "--set", "recipe.optim_g.lr=abc"], "recipe.optim_g.lr must be"),
    ("train: negative seed", ["train", *TINY, "--seed", "-1"], "seed must be"),
    ("train: negative workers", ["train", *TINY, "--workers", "-1"], "workers must be"),
    ("train: width 0", ["train", *TINY[:2], "--width", "0", "--size", "32"], "--width must be a positive integer"),
    ("train: size too large", ["train", "--model", "deepfill_v2", "--size", "100000", "--tracker", "none"],
     "first layer of deepfill_v2 alone needs"),
    ("train: save_every 0", ["train", *TINY, "--set", "save_every=0"], "save_every must be"),
    ("train: recipe.masks (moved)", ["train", *TINY, "--set", "recipe.masks=box"], "use --set masks"),
    ("train: unknown mask generator", ["train", *TINY, "--set", "masks=nope"], "masks must be a mask generator"),
    ("train: unknown tracker", ["train", *TINY[:-2], "--tracker", "mlflow"], "invalid choice"),
    ("train: size not a multiple", ["train", *TINY[:4], "--size", "30"], "not a multiple of 8"),
    ("train: missing data", ["train", *TINY, "--data", "missing_dir"], "does not exist"),
    ("train: data without images", ["train", *TINY, "--data", "{ws}/empty"], "no images found"),
    ("train: broken manifest", ["train", *TINY, "--data", "{ws}/bad.json"], "is not a split manifest"),
    ("train: missing config", ["train", "--config", "missing.yaml"], "does not exist"),
    ("train: invalid YAML config", ["train", "--config", "{ws}/broken.yaml"], "not valid YAML"),
    ("train: config with unknown key", ["train", "--config", "{ws}/unknown.yaml"], "unknown settings ['colour']"),
    ("train: resume missing run", ["train", "--resume", "missing_run"], "does not exist"),
    ("train: resume corrupt checkpoint", ["train", "--resume", "{ws}/run_corrupt", "--max-steps", "4"], "corrupt"),
    ("train: resume with a changed setting", ["train", "--resume", "{ws}/run", "--size", "64"],
     "--size cannot change them"),
    ("train: resume with a bad step budget", ["train", "--resume", "{ws}/run", "--max-steps", "0"],
     "max_steps must be"),
    ("train: out not empty", ["train", *TINY, "--out", "{ws}/busy"], "already exists and is not empty"),
    ("train: out under a file", ["train", *TINY, "--out", "{ws}/a_file/run"], "cannot create run directory"),
    ("train: loss stage out of range", ["train", *TINY, "--set", "recipe.losses.0.stage=9"], "stage index"),
    ("train: betas out of range", ["train", *TINY, "--set", "recipe.optim_d.betas=[2, 3]"], "betas must be"),
    ("train: mask kwarg nothing takes", ["train", *TINY, "--set", "mask_kwargs.bogus=1"], "takes no 'bogus'"),
    ("train: model kwarg nothing takes", ["train", *TINY, "--set", "model_kwargs.bogus=1"], "does not accept"),
    ("train: no VGG weights allowed", ["train", "--model", "ra", "--width", "4", "--size", "32", "--batch-size", "2",
                                       "--tracker", "none", "--workers", "0", "--out", "vgg_run",
                                       "--set", "allow_random_vgg=false"], "vgg"),
    ("train: init from missing file", ["train", *TINY, "--workers", "0", "--out", "init_run", "--init-from",
                                       "missing.pt"], "does not exist"),
    # zoo inpaint
    ("inpaint: missing image", ["inpaint", "--model", "deepfill_v2", "--image", "missing.png", "--mask",
                                "{ws}/mask.png", "--out", "out.png"], "missing.png"),
    ("inpaint: corrupt image", ["inpaint", "--model", "deepfill_v2", "--image", "{ws}/corrupt.png", "--mask",
                                "{ws}/mask.png", "--out", "out.png"], "cannot read image"),
    ("inpaint: mask of another size", ["inpaint", "--model", "deepfill_v2", "--image", "{ws}/photo.png", "--mask",
                                       "{ws}/mask_small.png", "--out", "out.png"], "32x32 but image"),
    ("inpaint: mask without holes", ["inpaint", "--model", "deepfill_v2", "--image", "{ws}/photo.png", "--mask",
                                     "{ws}/mask_empty.png", "--out", "out.png"], "marks no pixel as hole"),
    ("inpaint: garbage checkpoint", ["inpaint", "--model", "deepfill_v2", "--checkpoint", "{ws}/garbage.pt",
                                     "--image", "{ws}/photo.png", "--mask", "{ws}/mask.png", "--out", "out.png"],
     "garbage.pt"),
    ("inpaint: zero variants", ["inpaint", "--model", "deepfill_v2", "--checkpoint", CKPT, "--image",
                                "{ws}/photo.png", "--mask", "{ws}/mask.png", "--out", "out.png", "--variants", "0"],
     "--variants must be at least 1"),
    ("inpaint: sketch for a model without", ["inpaint", "--model", "deepfill_v2", "--checkpoint", CKPT,
                                             "--image", "{ws}/photo.png", "--mask", "{ws}/mask.png", "--sketch",
                                             "{ws}/mask.png", "--out", "out.png"], "takes no sketch"),
    # zoo eval / compare
    ("eval: unknown model", ["eval", "--model", "nope", "--metrics", "l1"], "unknown model"),
    ("eval: missing data", ["eval", "--model", "opencv_telea", "--data", "missing_dir", "--metrics", "l1"],
     "does not exist"),
    ("eval: unknown mask protocol", ["eval", "--model", "opencv_telea", "--masks", "nope", "--metrics", "l1"],
     "nope"),
    ("eval: unknown metric", ["eval", "--model", "opencv_telea", "--metrics", "bogus"], "bogus"),
    ("compare: unknown model", ["compare", "--model", "opencv_telea", "nope", "--metrics", "l1"], "unknown model"),
    ("compare: entry missing checkpoint", ["compare", "--model", "deepfill_v2,checkpoint=missing.pt",
                                           "--metrics", "l1"], "does not exist"),
    # zoo split
    ("split: missing data", ["split", "--data", "missing_dir", "--out", "s.json"], "does not exist"),
    ("split: out under a file", ["split", "--data", "{ws}/photos", "--out", "{ws}/a_file/s.json"], "is a file"),
    ("split: out is a folder", ["split", "--data", "{ws}/photos", "--out", "{ws}/empty"], "a .json file"),
    ("split: fraction above 1", ["split", "--data", "{ws}/photos", "--out", "s.json", "--val", "1.5"],
     "--val must be a fraction"),
    ("split: no training images left", ["split", "--data", "{ws}/photos", "--out", "s.json", "--val", "0.5",
                                        "--test", "0.5"], "leave no training images"),
]


def test_bad_inputs_give_one_error_line_exit_2_and_change_no_file(ws, tmp_path):
    before = hashes(ws)

    def run(k):
        name, argv, expected = CASES[k]
        cwd = tmp_path / f"case{k:02d}"
        cwd.mkdir()
        result = zoo(*[a.replace("{ws}", str(ws)) for a in argv], cwd=cwd)
        return name, argv, expected, result, sorted(p.name for p in cwd.iterdir())

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(CASES))))
    problems, table = [], ["| input | exit | first stderr line |", "|---|---|---|"]
    for name, _argv, expected, result, left in results:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        first = lines[0] if lines else ""
        table.append(f"| {name} | {result.returncode} | `{first[:150]}` |")
        if result.returncode != 2:
            problems.append(f"{name}: exit {result.returncode}: {result.stderr[-500:]}")
        elif "Traceback" in result.stderr or len(errors) != 1 or lines[-1] != errors[0]:
            problems.append(f"{name}: not one error line: {lines[-6:]}")
        elif expected.lower() not in errors[0].lower():
            problems.append(f"{name}: {errors[0]!r} lacks {expected!r}")
        if left:
            problems.append(f"{name}: left files behind in its working directory: {left}")
    if DRILL_TABLE:
        DRILL_TABLE.write_text("\n".join(table) + "\n")
    assert len(CASES) >= 40
    assert not problems, "\n".join(problems)
    assert hashes(ws) == before


# ---- signals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signal_saves_the_step_in_progress_and_resume_is_exact(tmp_path, signum, group):
    """SIGTERM to the trainer (cluster preemption), SIGINT to its process group (Ctrl-C in a terminal, which
    also reaches the DataLoader workers)."""
    run = tmp_path / "run"
    proc = start("train", *TINY, "--max-steps", "500", "--workers", "2", "--out", run, "--set", "log_every=1",
                 "--set", "save_every=1000", cwd=tmp_path, log=tmp_path / "log")
    wait_for(lambda: len(logged_steps(run)) >= 3, what="3 steps", proc=proc)
    (os.killpg if group else os.kill)(proc.pid, signum)
    proc.wait(timeout=120)
    err = (tmp_path / "log.err").read_text()
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()][-1]
    state = read_checkpoint(run)
    k = state["step"]
    assert last == (f"stopped by {signal.Signals(signum).name} after step {k}: saved {run}/checkpoints/"
                    f"step_{k:07d}.pt; continue with zoo train --resume {run}")
    assert logged_steps(run)[-1] == k  # no trained step is lost
    assert not list(run.rglob("*.tmp"))
    # resume to k + 2 and compare with a run that was never interrupted
    resumed = zoo("train", "--resume", run, "--max-steps", k + 2, "--workers", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = train(tiny_cfg(tmp_path / "straight", k + 2))
    assert_same_training_state(read_checkpoint(run), read_checkpoint(straight))
    assert logged_steps(run) == list(range(1, k + 3))


def test_second_signal_abandons_the_save_and_keeps_the_previous_checkpoint(tmp_path):
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        # the full-width discriminator: a checkpoint of ~70 MB takes long enough to write to be hit
        proc = start("train", *TINY_G, "--max-steps", "500", "--workers", "0",
                     "--out", run, "--set", "log_every=1", "--set", "save_every=2", "--set", "keep_checkpoints=5",
                     cwd=tmp_path, log=tmp_path / f"log{attempt}")
        wait_for(lambda run=run: len(list_checkpoints(run)) >= 1 and len(logged_steps(run)) >= 3, proc=proc,
                 what="a checkpoint and 3 steps")
        previous = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in list_checkpoints(run)}
        os.kill(proc.pid, signal.SIGTERM)
        wait_for(lambda run=run, proc=proc: list((run / "checkpoints").glob("*.tmp")) or proc.poll() is not None,
                 timeout=120, what="the save")
        os.kill(proc.pid, signal.SIGTERM) if proc.poll() is None else None
        proc.wait(timeout=120)
        err = (tmp_path / f"log{attempt}.err").read_text()
        assert proc.returncode == 143, err[-2000:]
        assert "Traceback" not in err
        assert not list(run.rglob("*.tmp"))
        for path, digest in previous.items():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        if "aborted by a second SIGTERM during a checkpoint save" in err:  # else the save was done before the signal
            assert err.strip().splitlines()[-1].startswith("aborted by a second SIGTERM")
            assert set(list_checkpoints(run)) == set(previous)  # the abandoned save left nothing
            read_checkpoint(run)
            return
    pytest.fail("the second signal never arrived during a save in 3 attempts")


def test_dataloader_workers_die_with_a_killed_trainer(tmp_path):
    run = tmp_path / "run"
    proc = start("train", *TINY, "--max-steps", "500", "--workers", "2", "--out", run, "--set", "log_every=1",
                 cwd=tmp_path, log=tmp_path / "log")
    wait_for(lambda: len(logged_steps(run)) >= 2, what="2 steps", proc=proc)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    wait_for(lambda: not any(Path(f"/proc/{c}").exists() and "zombie" not in _state(c) for c in children),
             timeout=10, what="the workers to exit")
    assert time.monotonic() - killed < 2


def _state(pid) -> str:
    try:
        return "zombie" if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z" else "alive"
    except OSError:
        return "zombie"


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_when_one_is_signalled(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
           ZOO, "train", *TINY, "--max-steps", "500", "--workers", "0", "--cpu", "--out", str(run),
           "--set", "log_every=1", "--set", "save_every=1000"]
    with open(tmp_path / "log.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    wait_for(lambda: len(logged_steps(run)) >= 3, what="3 steps", proc=proc)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2
    ranks = {int(dict(v.split("=", 1) for v in Path(f"/proc/{w}/environ").read_text().split("\0") if "=" in v)
                  ["RANK"]): int(w) for w in workers}
    os.kill(ranks[1], signal.SIGTERM)  # only rank 1 is told: the all-reduced flag stops rank 0 at the same step
    proc.wait(timeout=180)
    log = (tmp_path / "log.err").read_text()
    state = read_checkpoint(run)
    k = state["step"]
    assert f"stopped by SIGTERM after step {k}: saved {run}/checkpoints/step_{k:07d}.pt" in log
    assert log.count("stopped by SIGTERM") == 1  # rank 0 says it; rank 1 stops quietly
    assert logged_steps(run)[-1] == k and state["batches"] == k
    fingerprints = state["process_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert "exitcode  : 143" in log  # torchrun's summary of the stopped worker


# ---- a full disk ----------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root; test_full_disk_simulated covers the same path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_during_training_is_one_line_and_loses_nothing(tmp_path, tiny_disk):
    run = tiny_disk / "run"
    result = zoo("train", *TINY, "--max-steps", "200", "--workers", "0", "--out", run, "--set", "save_every=1",
                 "--set", "keep_checkpoints=0", "--set", "log_every=1", "--set", "sample_every=1000", cwd=tmp_path)
    err = [ln for ln in result.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert err[-1].startswith("error: no space left on device") and str(run) in err[-1], err[-1]
    saved = list_checkpoints(run)
    assert saved and not list(run.rglob("*.tmp"))  # the partial file is gone, so the space is free again
    newest = read_checkpoint(run)  # every checkpoint written is whole
    assert newest["step"] == len(saved)
    # still full: --resume says so in one line and changes nothing
    before = hashes(run)
    again = zoo("train", "--resume", run, "--max-steps", newest["step"] + 5, cwd=tmp_path)
    assert again.returncode == 2 and "no space left on device" in again.stderr.splitlines()[-1]
    assert hashes(run) == before
    # space freed: it continues
    for old in saved[:-1]:
        old.unlink()
    resumed = zoo("train", "--resume", run, "--max-steps", newest["step"] + 1, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_checkpoint(run)["step"] == newest["step"] + 1


def test_full_disk_simulated(tmp_path, monkeypatch):
    """Without root: torch.save failing half-way with ENOSPC, as on a full disk."""
    from trainers import checkpoint as ckpt
    from zoo.errors import DiskFullError

    run = train(tiny_cfg(tmp_path / "run", 2, save_every=1))
    good = {p: p.read_bytes() for p in list_checkpoints(run)}

    def full(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*step_0000003.pt; the last checkpoint"):
        train(resume=str(run), max_steps=3)
    assert {p: p.read_bytes() for p in list_checkpoints(run)} == good and not list(run.rglob("*.tmp"))
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    with pytest.raises(DiskFullError, match=r"needs about .* MB, 0.0 MB free"):
        ckpt.save_checkpoint({"G": torch.zeros(1000)}, run, 9)


# ---- run directories --------------------------------------------------------------------------------------------

def test_two_runs_racing_for_one_out_directory(tmp_path):
    out = tmp_path / "shared"
    args = ["train", *TINY, "--max-steps", "1", "--workers", "0", "--out", out]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: zoo(*args, cwd=tmp_path), range(2)))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-1000:] for r in results]
    loser = next(r for r in results if r.returncode == 2)
    assert loser.stderr.strip().splitlines()[-1].startswith("error: run directory")
    assert "Traceback" not in loser.stderr
    assert read_checkpoint(out)["step"] == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["out"] == str(out)


def test_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    run = tmp_path / "run"
    proc = start("train", *TINY, "--max-steps", "500", "--workers", "0", "--out", run, "--set", "log_every=1",
                 "--set", "save_every=1000", cwd=tmp_path, log=tmp_path / "log")
    wait_for(lambda: len(logged_steps(run)) >= 1, what="a step", proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "config.yaml").is_file() and not list_checkpoints(run)
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "step_0000009.pt.tmp").write_bytes(b"half a save")  # a killed save's leftover
    resumed = zoo("train", "--resume", run, "--max-steps", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(run.rglob("*.tmp"))
    assert logged_steps(run) == [1, 2, 3]  # the killed run's lines after its (absent) checkpoint are dropped
    straight = train(tiny_cfg(tmp_path / "straight", 3))
    assert_same_training_state(read_checkpoint(run), read_checkpoint(straight))


def test_a_failed_set_up_leaves_no_run_directory(tmp_path):
    result = zoo("train", "--model", "ra", "--width", "4", "--size", "32", "--batch-size", "2", "--tracker", "none",
                 "--workers", "0", "--out", tmp_path / "run", "--set", "allow_random_vgg=false", cwd=tmp_path)
    assert result.returncode == 2 and "vgg" in result.stderr.lower()
    assert not (tmp_path / "run").exists()
