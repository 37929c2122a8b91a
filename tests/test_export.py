"""Export: every preset to ONNX (run by onnxruntime) and TorchScript computes what the PyTorch model computes;
export-safe layers equal their PyTorch paths; ``zoo export`` / ``--onnx`` bad input ends in one error line."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import zoo
from zoo.contract import composite
from zoo.export import OnnxGenerator, example_batch, export_model, family_export, read_metadata, state_sha256
from zoo.layers import ContextualAttention
from zoo.layers.export_safe import fold_transposed, stable_softmax

TOLERANCE = 1e-4
# torch.jit and the TorchScript-based ONNX exporter announce their deprecation; the files are what we test
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def tiny_model(name, seed=0):
    torch.manual_seed(seed)
    return zoo.create_model(name, **zoo.get_preset(name).tiny).eval()


def conditioning(name, model, batch, height, width, seed=1):
    """The extra inputs a caller passes: a sketch for mhtma_sketch, a latent for MAT."""
    g = torch.Generator().manual_seed(seed)
    if name == "mhtma_sketch":
        sketch = torch.zeros(batch, 1, height, width)
        sketch[:, :, height // 3, width // 8 : width // 2] = 1  # a horizontal line through the first hole
        return {"sketch": sketch}
    if name.startswith("mat"):
        return {"z": torch.randn(batch, model.z_dim, generator=g)}
    return {}


def reference(model, masked_image, mask, extras):
    """What the PyTorch model gives through its ordinary API (eval mode: MAT's constant noise and keep-maps)."""
    with torch.no_grad():
        return composite(masked_image, model(masked_image, mask, **extras).final, mask)


def run_torchscript(path, masked_image, mask, extras):
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(masked_image, mask, *extras.values())


def max_hole_diff(a, b, mask):
    assert a.shape == b.shape
    assert torch.equal(a * (1 - mask), b * (1 - mask)) or (a - b).mul(1 - mask).abs().max() < 1e-6  # known kept
    return float(((a - b) * mask).abs().max())


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", zoo.list_models())
def test_export_matches_pytorch(name, fmt, tmp_path):
    preset = zoo.get_preset(name)
    spec = family_export(name)
    model = tiny_model(name)
    size = preset.tiny_size
    path = tmp_path / f"{name}.{fmt}"
    meta = export_model(name, fmt, (size, size), path, dynamic=True, overrides=preset.tiny, model=model,
                        log=lambda line: None)

    stored = read_metadata(path)
    assert stored["preset"] == name and stored["format"] == "inpaint-zoo-export/1"
    assert stored["parameters_sha256"] == state_sha256(model)
    assert "1 = hole" in stored["mask_convention"] and stored["license"].startswith("code: MIT")
    assert stored["dynamic"] == ("true" if spec["dynamic"] else "false") == meta["dynamic"]

    sizes = [(size, size)] + ([(size + 32, size + 64)] if spec["dynamic"] else [])
    for height, width in sizes:
        batch = 2 if spec["dynamic_batch"] and (height, width) != (size, size) else 1
        masked_image, mask = example_batch(batch, height, width, seed=5)
        extras = conditioning(name, model, batch, height, width)
        expected = reference(model, masked_image, mask, extras)
        if fmt == "onnx":
            got = OnnxGenerator(path)(masked_image, mask, **extras).final
        else:
            got = run_torchscript(path, masked_image, mask, extras)
        diff = max_hole_diff(got, expected, mask)
        assert diff <= TOLERANCE, f"{name} {fmt} at {height}x{width}: max |diff| {diff:.2e}"
        assert float((expected * mask).abs().sum()) > 0  # the holes were filled with something

    if fmt == "onnx" and "z" in conditioning(name, model, 1, size, size):
        # no z given: the runner draws it from torch's generator, as the PyTorch model does
        masked_image, mask = example_batch(1, size, size, seed=6)
        torch.manual_seed(11)
        got = OnnxGenerator(path)(masked_image, mask).final
        torch.manual_seed(11)
        expected = reference(model, masked_image, mask, {})
        assert max_hole_diff(got, expected, mask) <= TOLERANCE


def test_deepfill_tf_mode_weights_export_at_one_size(tmp_path):
    """TF-mode padding depends on the input size: --dynamic says so and exports the given size, which matches."""
    model = tiny_model("deepfill_v2").configure(tf_mode=True)
    notes = []
    meta = export_model("deepfill_v2", "onnx", (64, 64), tmp_path / "tf.onnx", dynamic=True, model=model,
                        log=notes.append)
    assert meta["dynamic"] == "false" and len(notes) == 1 and "TF-mode" in notes[0]
    masked_image, mask = example_batch(1, 64, 64, seed=5)
    got = OnnxGenerator(tmp_path / "tf.onnx")(masked_image, mask).final
    assert max_hole_diff(got, reference(model, masked_image, mask, {}), mask) <= TOLERANCE


def test_dense_contextual_attention_equals_blocked_path():
    torch.manual_seed(0)
    for fuse in (True, False):
        for patch_norm in ("clamp", "additive"):
            layer = ContextualAttention(fuse=fuse, patch_norm=patch_norm, max_elements=50)  # many blocks
            x = torch.randn(2, 6, 24, 40)
            mask = torch.zeros(2, 1, 24, 40)
            mask[0, :, 4:12, 6:20] = 1
            mask[1, :, 10:20, 2:9] = 1
            blocked, blocked_offsets = layer(x, x, mask)
            layer.dense = True
            dense, dense_offsets = layer(x, x, mask)
            assert (dense - blocked).abs().max() < 1e-5
            assert torch.equal(dense_offsets, blocked_offsets)


def test_export_safe_pieces_equal_torch():
    x = torch.randn(3, 50) * 30
    assert torch.allclose(stable_softmax(x, dim=1, scale=10.0), torch.softmax(10.0 * x, dim=1), atol=1e-6)
    # fp16: the max-subtracted form stays finite where scaling first overflows
    big = torch.full((1, 4), 7000.0, dtype=torch.float16)
    assert torch.isfinite(stable_softmax(big, dim=1, scale=10.0)).all()
    for kernel, stride, padding, size in ((4, 2, 1, (32, 24)), (3, 1, 1, (10, 14))):
        blocks = ((size[0] + 2 * padding - kernel) // stride + 1) * ((size[1] + 2 * padding - kernel) // stride + 1)
        cols = torch.randn(2, 5 * kernel * kernel, blocks)
        assert torch.allclose(fold_transposed(cols, size, kernel, padding, stride),
                              F.fold(cols, size, kernel, padding=padding, stride=stride), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The command line, as a user meets it


def zoo_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_one_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def write_pair(folder, size):
    rng = np.random.default_rng(size)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"img{size}.png")
    hole = np.zeros((size, size), np.uint8)
    hole[size // 4 : size // 2, size // 3 : 2 * size // 3] = 255
    Image.fromarray(hole).save(folder / f"mask{size}.png")


def zoo_checkpoint(path, name, model, kwargs):
    torch.save({"format": "inpaint-zoo-checkpoint/1", "model": name, "config": {"model_kwargs": kwargs},
                "G": model.state_dict()}, path)


def test_cli_export_then_inpaint_and_eval_with_onnx(tmp_path):
    model = tiny_model("deepfill_v2", seed=3)
    checkpoint = tmp_path / "dfv2.pt"
    zoo_checkpoint(checkpoint, "deepfill_v2", model, {"cnum": 8})
    write_pair(tmp_path, 72)
    result = zoo_cli("export", "--model", "deepfill_v2", "--checkpoint", checkpoint, "--size", 64, "--dynamic",
                     "--out", "dfv2.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = read_metadata(tmp_path / "dfv2.onnx")
    assert meta["weights_file_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["dynamic"] == "true" and meta["size_multiple"] == "8"

    # 72 x 72 is padded to 80 for both, as zoo.inpaint does; the same pixels up to 8-bit rounding
    for flag in (["--onnx", "dfv2.onnx"], ["--model", "deepfill_v2", "--checkpoint", checkpoint]):
        out = "onnx.png" if flag[0] == "--onnx" else "torch.png"
        result = zoo_cli("inpaint", *flag, "--image", "img72.png", "--mask", "mask72.png", "--out", out,
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    onnx_pixels = np.asarray(Image.open(tmp_path / "onnx.png"), dtype=np.int16)
    torch_pixels = np.asarray(Image.open(tmp_path / "torch.png"), dtype=np.int16)
    assert np.abs(onnx_pixels - torch_pixels).max() <= 1

    result = zoo_cli("eval", "--onnx", "dfv2.onnx", "--size", 64, "--metrics", "l1,psnr", "--pairs", 4,
                     "--out", "ev", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deepfill_v2-onnx" in result.stdout
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert "l1" in json.dumps(results)


def test_cli_bad_input_one_error_line(tmp_path):
    write_pair(tmp_path, 96)
    # a size the model cannot take: nothing written
    result = zoo_cli("export", "--model", "deepfill_v2", "--width", 8, "--size", 60, "--out", "bad.onnx",
                     cwd=tmp_path)
    assert_one_error(result, "multiples of 8", "60x60")
    assert not (tmp_path / "bad.onnx").exists()

    # an export that fails: RA built for 64 px asked for 72 px pools its grid adaptively, which ONNX lacks
    result = zoo_cli("export", "--model", "ra", "--width", 8, "--set", "image_size=64", "--size", 72,
                     "--out", "ra72.onnx", cwd=tmp_path)
    assert_one_error(result, "cannot be exported", "adaptive_avg_pool2d")
    assert not list(tmp_path.glob("ra72*"))

    # --dynamic where the architecture ties the size: one line, then the fixed size
    result = zoo_cli("export", "--model", "ra", "--width", 8, "--size", 64, "--dynamic", "--out", "ra.onnx",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "fixed size 64x64" in notes[0]
    assert read_metadata(tmp_path / "ra.onnx")["dynamic"] == "false"

    # a mismatched input size at run time: no output written
    result = zoo_cli("inpaint", "--onnx", "ra.onnx", "--image", "img96.png", "--mask", "mask96.png",
                     "--out", "filled.png", cwd=tmp_path)
    assert_one_error(result, "64x64", "96x96")
    assert not (tmp_path / "filled.png").exists()

    # an ONNX file that is not a zoo export
    torch.onnx.export(torch.nn.Conv2d(3, 3, 1), (torch.randn(1, 3, 8, 8),), str(tmp_path / "plain.onnx"),
                      dynamo=False)
    for command in (["inpaint", "--onnx", "plain.onnx", "--image", "img96.png", "--mask", "mask96.png",
                     "--out", "x.png"], ["eval", "--onnx", "plain.onnx", "--size", 64]):
        assert_one_error(zoo_cli(*command, cwd=tmp_path), "not a zoo export")
