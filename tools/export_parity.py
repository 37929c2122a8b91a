"""Full-width export check per family: export time, file size, parity and CPU latency against PyTorch.

    python tools/export_parity.py                          # every family, 256 px (MAT 512)
    python tools/export_parity.py --models deepfill_v2 hint --repeats 5 --threads 2 --json runs/export.json

For each preset, at its full width (random weights, seeded): export to ONNX and TorchScript (wall time, file
size), then on one fixed image and mask compare the ONNX file run by onnxruntime and the TorchScript file with
the PyTorch model (max |difference| over hole pixels), and time the PyTorch forward against onnxruntime on the
CPU, interleaved (PyTorch, ONNX, PyTorch, ONNX, ...) so that load on a shared machine hits both alike; the
median of ``--repeats`` runs after one warm-up each. Both use ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.export import OnnxGenerator, example_batch, export_model, family_export  # noqa: E402

DEFAULT_MODELS = ("deepfill_v1", "deepfill_v2", "mhtma", "mhtma_sketch", "ra", "hint", "mat_256", "mat")


def conditioning(name, model, height, width):
    if name == "mhtma_sketch":
        sketch = torch.zeros(1, 1, height, width)
        sketch[:, :, height // 3, width // 8 : width // 2] = 1
        return {"sketch": sketch}
    if name.startswith("mat"):
        return {"z": torch.randn(1, model.z_dim, generator=torch.Generator().manual_seed(1))}
    return {}


def check(name, size, repeats, threads, folder) -> dict:
    preset = zoo.get_preset(name)
    torch.manual_seed(0)
    overrides = {preset.size_arg: size} if preset.size_arg else {}
    model = zoo.create_model(name, **overrides).eval()
    row = {"model": name, "size": size, "params": sum(p.numel() for p in model.parameters()),
           "exporter": family_export(name)["exporter"]}
    masked_image, mask = example_batch(1, size, size, seed=5)
    extras = conditioning(name, model, size, size)
    with torch.no_grad():
        expected = masked_image * (1 - mask) + model(masked_image, mask, **extras).final * mask
    for fmt in ("onnx", "torchscript"):
        path = Path(folder) / f"{name}.{fmt}"
        start = time.perf_counter()
        export_model(name, fmt, (size, size), path, overrides=overrides, model=model, log=lambda line: None)
        row[f"{fmt}_export_s"] = round(time.perf_counter() - start, 1)
        row[f"{fmt}_mib"] = round(path.stat().st_size / 2**20, 1)
        if fmt == "onnx":
            onnx_model = OnnxGenerator(path, threads=threads)
            got = onnx_model(masked_image, mask, **extras).final
        else:
            scripted = torch.jit.load(str(path))
            with torch.no_grad():
                got = scripted(masked_image, mask, *extras.values())
        row[f"{fmt}_max_diff"] = float(((got - expected) * mask).abs().max())

    def pytorch():
        with torch.no_grad():
            model(masked_image, mask, **extras)

    def onnxruntime():
        onnx_model(masked_image, mask, **extras)

    times = {"pytorch": [], "onnxruntime": []}
    pytorch(), onnxruntime()  # warm-up
    for _ in range(repeats):
        for key, fn in (("pytorch", pytorch), ("onnxruntime", onnxruntime)):
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    row["pytorch_ms"] = round(1000 * statistics.median(times["pytorch"]), 1)
    row["onnxruntime_ms"] = round(1000 * statistics.median(times["onnxruntime"]), 1)
    row["ort_over_pytorch"] = round(row["onnxruntime_ms"] / row["pytorch_ms"], 2)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--size", type=int, default=256, help="export size (MAT presets: their resolution)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    columns = ("model", "size", "params", "exporter", "onnx_export_s", "onnx_mib", "torchscript_export_s",
               "torchscript_mib", "onnx_max_diff", "torchscript_max_diff", "pytorch_ms", "onnxruntime_ms",
               "ort_over_pytorch")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            preset = zoo.get_preset(name)
            size = preset.native_size if preset.size_multiple > 16 else args.size  # MAT: its build resolution
            row = check(name, size, args.repeats, args.threads, folder)
            rows.append(row)
            print("| " + " | ".join(f"{row[c]:.1e}" if c.endswith("diff") else str(row[c]) for c in columns) + " |",
                  flush=True)
            Path(folder, f"{name}.onnx").unlink(missing_ok=True)
            Path(folder, f"{name}.torchscript").unlink(missing_ok=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
