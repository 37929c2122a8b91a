"""The command line: listing, training, splitting, inpainting, and one clear line for every bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_list_shows_every_model_with_its_parameter_count(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list_models():
        assert name in out
    assert "4.05M" in out  # deepfill_v2 at the official width


def test_unknown_model_is_one_line(capsys):
    assert main(["train", "--model", "nope", "--max-steps", "1"]) == 2
    line = error_line(capsys)
    assert "unknown model 'nope'" in line and "deepfill_v2" in line


@pytest.mark.parametrize("case", ["missing", "empty", "no_images"])
def test_bad_data_paths(tmp_path, capsys, case):
    data = tmp_path / "data"
    if case != "missing":
        data.mkdir()
    if case == "no_images":
        (data / "readme.txt").write_text("hello")
    code = main(["train", "--model", "deepfill_v2", "--data", str(data), "--max-steps", "1",
                 "--out", str(tmp_path / "run"), "--tracker", "none"])
    assert code == 2
    line = error_line(capsys)
    assert ("does not exist" if case == "missing" else "no images found") in line
    assert not (tmp_path / "run").exists()


def test_bad_settings_are_one_line(tmp_path, capsys):
    assert main(["train", "--model", "deepfill_v2", "--size", "60", "--max-steps", "1"]) == 2
    assert "multiple of 8" in error_line(capsys)
    assert main(["train", "--model", "deepfill_v2", "--set", "recipe.nothing=1"]) == 2
    assert "no such setting" in error_line(capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid YAML" in error_line(capsys)


def test_resume_of_corrupt_checkpoint_is_one_line_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_0000002.pt").write_bytes(b"garbage")
    (run / "config.yaml").write_text("model: deepfill_v2\n")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run)]) == 2
    assert "corrupt" in error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["train", "--resume", str(tmp_path / "nothing-here")]) == 2
    assert "does not exist" in error_line(capsys)


def write_pair(tmp_path, image_size=(48, 40), mask_size=(48, 40), hole=True):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*image_size, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    mask = np.zeros(mask_size, np.uint8)
    if hole:
        mask[10:20, 8:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path / "img.png", tmp_path / "mask.png"


def test_inpaint_writes_a_completed_image_of_the_input_size(tmp_path, capsys):
    image, mask = write_pair(tmp_path)
    assert main(["inpaint", "--model", "deepfill_v2", "--image", str(image), "--mask", str(mask),
                 "--out", str(tmp_path / "out.png"), "--cpu"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    src = np.asarray(Image.open(image))
    assert out.shape == src.shape
    known = np.asarray(Image.open(mask)) == 0
    assert np.abs(out[known].astype(int) - src[known]).max() <= 1  # known pixels survive (rounding)


@pytest.mark.parametrize("problem", ["size", "empty", "full", "corrupt_image", "corrupt_checkpoint"])
def test_inpaint_bad_input_is_one_line(tmp_path, capsys, problem):
    image, mask = write_pair(tmp_path, mask_size=(30, 30) if problem == "size" else (48, 40),
                             hole=problem != "empty")
    args = ["inpaint", "--model", "deepfill_v2", "--image", str(image), "--mask", str(mask),
            "--out", str(tmp_path / "out.png"), "--cpu"]
    if problem == "full":
        args += ["--hole", "black"]
        Image.fromarray(np.zeros((48, 40), np.uint8)).save(mask)
    if problem == "corrupt_image":
        image.write_bytes(b"\x89PNG broken")
    if problem == "corrupt_checkpoint":
        (tmp_path / "g.pt").write_bytes(b"nonsense")
        args += ["--checkpoint", str(tmp_path / "g.pt")]
    assert main(args) == 2
    line = error_line(capsys)
    expected = {"size": "is 30x30 but image", "empty": "marks no pixel", "full": "marks every pixel",
                "corrupt_image": "cannot read image", "corrupt_checkpoint": "corrupt"}[problem]
    assert expected in line
    assert not (tmp_path / "out.png").exists()


def test_checkpoint_with_misshaped_keys_names_them(tmp_path):
    state = zoo.create_model("deepfill_v2", cnum=8).state_dict()
    state["coarse.conv1.conv.weight"] = torch.zeros(1)
    del state["decoder.allconv17.conv.bias"]
    torch.save(state, tmp_path / "g.pt")
    with pytest.raises(zoo.ZooError, match=r"missing keys \['decoder.allconv17.conv.bias'\].*coarse.conv1"):
        zoo.load("deepfill_v2", checkpoint=tmp_path / "g.pt", cnum=8)


def test_api_rejects_non_binary_and_misshaped_masks():
    G = zoo.create_model("deepfill_v2", cnum=8).eval()
    image = torch.zeros(1, 3, 32, 32)
    with pytest.raises(zoo.ZooError, match="only 0 .* and 1"):
        zoo.inpaint(G, image, torch.full((1, 1, 32, 32), 0.5))
    with pytest.raises(zoo.ZooError, match="differs from image size"):
        zoo.inpaint(G, image, torch.zeros(1, 1, 16, 32))


def test_split_command_and_console_entry(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"{i}.png")
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "split", "--data", str(folder), "--out",
                             str(tmp_path / "split.json"), "--val", "0.2", "--test", "0.1"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "train 7" in result.stdout and "val 2" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "zoo.cli", "split", "--data", str(tmp_path / "none"),
                          "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0


def test_load_rebuilds_a_trained_width_from_the_checkpoint(tmp_path):
    from trainers.config import resolve_config
    from trainers.trainer import train

    cfg = resolve_config("deepfill_v2", flags=dict(size=32, batch_size=2, max_steps=1, out=str(tmp_path / "r"),
                                                   tracker="none", workers=0), width=8)
    run = train(cfg)
    ckpt = next((run / "checkpoints").glob("*.pt"))
    model = zoo.load("deepfill_v2", checkpoint=ckpt)  # no width given: taken from the checkpoint
    assert model.coarse.conv1.conv.out_channels == 8
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:16, 8:20] = 1
    assert zoo.inpaint(model, image, mask).shape == image.shape
    with pytest.raises(zoo.ZooError, match="holds a deepfill_v2 model, not deepfill_v1"):
        zoo.load("deepfill_v1", checkpoint=ckpt)


THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGES_AFTER_CLI = """
import os, sys
from zoo.cli import main
main(["list"])  # imports torch after the command line has set its environment
import torch
x = torch.ones(64 * 2**20 // 4)  # 64 MB, every page touched
x += 1
with open("/proc/self/smaps_rollup") as f:
    huge_kb = next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge_kb)
"""


@pytest.mark.skipif(not THP_MODE.exists() or "[madvise]" not in THP_MODE.read_text(),
                    reason="the kernel gives huge pages only when asked (madvise mode) on this test's premise")
@pytest.mark.parametrize("user_value", [None, "0"])
def test_command_line_asks_torch_for_huge_pages_unless_the_user_said_no(user_value):
    env = {"PYTHONPATH": str(ROOT), "PATH": "", "HF_HUB_OFFLINE": "1"}
    if user_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = user_value
    done = subprocess.run([sys.executable, "-c", HUGE_PAGES_AFTER_CLI], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    value, huge_kb = done.stdout.split()[-2:]
    if user_value is None:
        assert value == "1" and int(huge_kb) >= 32 * 1024  # most of the 64 MB tensor sits on 2 MB pages
    else:
        assert value == "0" and int(huge_kb) == 0
