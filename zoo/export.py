"""Export a registered generator to ONNX or TorchScript, and run an exported ONNX file like a zoo generator.

The exported graph is the deployable function, so that a deployment needs no zoo code::

    inpainted = f(image * (1 - mask), mask [, extras])     # = image * (1 - mask) + final * mask

with the zoo convention: RGB N x 3 x H x W in [-1, 1], mask N x 1 x H x W with 1 = hole. Extras are named
per family: ``sketch`` (N x 1 x H x W, mhtma_sketch), ``z`` and MAT's two bottleneck keep-maps (its random
dropout, which the file takes as inputs; the ONNX file stores the eval-mode maps as their defaults).

What differs per family lives in the family's own module as ``EXPORT = dict(...)``:

* ``exporter``: ``"dynamo"`` (``torch.export``-based) or ``"torchscript"`` (the tracing-based ONNX exporter),
  whichever exports that family best;
* ``dynamic``: whether height and width can stay free (multiples of the size multiple), or ``fn(model) -> bool``
  when that depends on the weights; ``fixed_reason``, the one line said when they cannot;
* ``dynamic_batch`` (default True), ``min_size`` (the smallest side a dynamic export accepts);
* ``inputs``: ``fn(model, batch, height, width) -> {name: (example tensor, how)}`` for the extra inputs, where
  ``how`` says what a runner passes when the caller gives nothing: ``"normal"`` (draw N(0, 1) from torch's
  generator), ``"zeros"``, or ``"stored"`` (the example is the default: stored in the ONNX file, a constant in
  the TorchScript file);
* ``call``: ``fn(model, masked_image, mask, **extras) -> InpaintOutput`` (default ``model(masked_image, mask,
  **extras)``);
* ``weights_license``: the licence of the family's released weights.

Both formats carry the same metadata (``metadata_props`` of the ONNX model, ``zoo_export.json`` among the
TorchScript ``_extra_files``): format, preset, model arguments, weights source and hash, size rule, mask and
image conventions, inputs, licence.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from zoo.contract import InpaintOutput
from zoo.errors import CheckpointError, InputSizeError, ZooError

FORMAT = "inpaint-zoo-export/1"
FORMATS = ("onnx", "torchscript")
EXTRA_FILE = "zoo_export.json"
OPSET = 18  # the first opset with Col2Im (DeepFill's and MHTMA's patch folding)
MASK_CONVENTION = "mask: float32 N x 1 x H x W in {0, 1}, 1 = hole (missing)"
IMAGE_CONVENTION = "image: float32 RGB N x 3 x H x W in [-1, 1]; pass image * (1 - mask) (hole pixels are ignored)"
OUTPUT = "inpainted: N x 3 x H x W in [-1, 1], = image * (1 - mask) + final stage * mask"
CODE_LICENSE = "MIT (inpaint-zoo)"


class ExportError(ZooError):
    """A model that cannot be exported (unsupported operator, size, exporter failure)."""


class NotAZooExportError(CheckpointError):
    """A file that is not an export written by ``zoo export``."""


def family_export(name: str) -> dict:
    """The ``EXPORT`` settings of preset ``name``'s family module, with defaults filled in."""
    from zoo.registry import get_preset

    preset = get_preset(name)
    module = sys.modules[preset.factory.__module__]
    spec = dict(exporter="dynamo", dynamic=True, fixed_reason="", dynamic_batch=True, min_size=None, inputs=None,
                call=None, weights_license="see the weights' source")
    spec.update(getattr(module, "EXPORT", {}))
    return spec


class Deployable(nn.Module):
    """``(masked image, mask, *extras) -> composited final stage``: the function an export records.

    ``constants`` are extras baked into the graph (the TorchScript file's stored inputs)."""

    def __init__(self, model: nn.Module, extra_names, call=None, constants: dict | None = None):
        super().__init__()
        self.model = model
        self.extra_names = list(extra_names)
        self.call = call
        self.constant_names = list(constants or {})
        for key, value in (constants or {}).items():
            self.register_buffer(f"const_{key}", value)

    def forward(self, masked_image, mask, *extras):
        known = 1 - mask
        masked_image = masked_image * known  # callers may pass the whole image: holes are never read
        kwargs = dict(zip(self.extra_names, extras))
        kwargs.update({k: getattr(self, f"const_{k}") for k in self.constant_names})
        out = self.call(self.model, masked_image, mask, **kwargs) if self.call else self.model(masked_image, mask,
                                                                                              **kwargs)
        return masked_image + out.final * mask


def example_batch(batch: int, height: int, width: int, seed: int = 0):
    """A fixed image (smooth colours + noise) and a mask with two rectangular holes; (masked image, mask)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    smooth = torch.stack([ys, xs, ys * xs])[None].expand(batch, -1, -1, -1)
    image = (0.7 * smooth + 0.3 * (torch.rand(batch, 3, height, width, generator=g) * 2 - 1)).clamp(-1, 1)
    mask = torch.zeros(batch, 1, height, width)
    mask[:, :, height // 4 : height // 2, width // 8 : width // 2] = 1
    mask[:, :, height // 2 : 7 * height // 8, width // 2 : 3 * width // 4] = 1
    return image * (1 - mask), mask


def extra_inputs(spec: dict, model, batch: int, height: int, width: int) -> dict:
    return dict(spec["inputs"](model, batch, height, width)) if spec["inputs"] else {}


def state_sha256(model: nn.Module) -> str:
    """Hash of the exported weights (every tensor of the state dict, in order)."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _file_sha256(path) -> str | None:
    path = Path(path)
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_size(name: str, multiple: int, height: int, width: int) -> None:
    if height < 1 or width < 1 or height % multiple or width % multiple:
        raise InputSizeError(f"{name} takes heights and widths that are multiples of {multiple}; "
                             f"{height}x{width} is not (try {max(1, round(height / multiple)) * multiple}x"
                             f"{max(1, round(width / multiple)) * multiple})")


_OPERATOR = re.compile(r"(aten[:.]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?|operator '?([A-Za-z0-9_:.]+)'?)")


def operator_of(exc: BaseException) -> str | None:
    """The operator an exporter error names, if any (e.g. ``aten::col2im``)."""
    text = f"{exc}"
    match = _OPERATOR.search(text)
    if not match:
        return None
    return match.group(2) or match.group(1)


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if line:
            return line[:300]
    return type(exc).__name__


def export_model(name: str, fmt: str, size, out, dynamic: bool = False, checkpoint=None, overrides=None,
                 opset: int = OPSET, log=print, model: nn.Module | None = None) -> dict:
    """Export preset ``name`` (weights from ``checkpoint``, any source ``zoo.load`` takes) to ``out``.

    ``size`` is (height, width); ``model`` exports an already built generator of preset ``name`` instead
    (``overrides`` then only describe it). Returns the metadata written into the file."""
    from zoo.api import load
    from zoo.registry import get_preset

    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if opset < 17:
        raise ExportError(f"ONNX opset {opset} is too old: zoo exports need opset 17 or newer")
    preset = get_preset(name)
    spec = family_export(name)
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    overrides = dict(overrides or {})
    if preset.size_arg and checkpoint is None and model is None:  # layers tied to the size: built for this one
        overrides.setdefault(preset.size_arg, (height, width) if height != width else height)
    if model is None:
        model = load(name, checkpoint, **overrides)
    model = model.eval()
    multiple = getattr(model, "zoo_size_multiple", None) or preset.size_multiple
    check_size(name, multiple, height, width)
    if callable(spec["dynamic"]):  # depends on the loaded weights (DeepFill's TF mode)
        spec = dict(spec, dynamic=spec["dynamic"](model))
    if dynamic and not spec["dynamic"]:
        log(f"note: {name} cannot take free sizes ({spec['fixed_reason']}); exporting the fixed size {height}x{width}")
        dynamic = False

    batch = 1
    masked_image, mask = example_batch(batch, height, width)
    extras = extra_inputs(spec, model, batch, height, width)
    metadata = {
        "format": FORMAT,
        "preset": name,
        "model_kwargs": json.dumps({k: v for k, v in overrides.items()}, sort_keys=True, default=str),
        "weights": str(checkpoint) if checkpoint is not None else "none (random initialisation)",
        "weights_file_sha256": (_file_sha256(checkpoint) if checkpoint is not None else None) or "",
        "parameters_sha256": state_sha256(model),
        "height": str(height),
        "width": str(width),
        "dynamic": "true" if dynamic else "false",
        "dynamic_batch": "true" if spec["dynamic_batch"] else "false",
        "size_multiple": str(multiple),
        "size_rule": (f"height and width any multiples of {multiple}" if dynamic
                      else f"exactly {height}x{width}" + (f" ({spec['fixed_reason']})" if spec["fixed_reason"]
                                                            else " (exported without --dynamic)")),
        "mask_convention": MASK_CONVENTION,
        "image_convention": IMAGE_CONVENTION,
        "output": OUTPUT,
        "inputs": json.dumps({"image": "N x 3 x H x W", "mask": "N x 1 x H x W",
                              **{k: {"shape": list(v[0].shape), "default": v[1]} for k, v in extras.items()}}),
        "license": f"code: {CODE_LICENSE}; weights: "
                   + (spec["weights_license"] if checkpoint is not None else "none (random initialisation)"),
        "exporter": spec["exporter"] if fmt == "onnx" else "torch.jit.trace",
        "opset": str(opset) if fmt == "onnx" else "",
        "torch_version": torch.__version__,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    start = time.perf_counter()
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _export_onnx(model, spec, masked_image, mask, extras, tmp, dynamic, multiple, opset, metadata)
            else:
                _export_torchscript(model, spec, masked_image, mask, extras, tmp, metadata)
    except ZooError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        op = operator_of(exc)
        what = f"unsupported operator {op}" if op else _first_line(exc)
        raise ExportError(f"{name} cannot be exported to {fmt} ({metadata['exporter']} exporter, opset {opset}): "
                          f"{what}") from None
    tmp.replace(out)
    metadata["export_seconds"] = f"{time.perf_counter() - start:.1f}"
    return metadata


@contextlib.contextmanager
def _quiet():
    """Silence stdout and stderr down to the file descriptors: the exporters print progress lines, and the
    TorchScript-based one its whole graph (from C++) when it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _dynamic_spec(spec, multiple, extras):
    """torch.export dims: batch, and H, W as multiples of ``multiple`` (the same for every image input)."""
    from torch.export import Dim

    lo = max(1, math.ceil((spec["min_size"] or multiple) / multiple))
    h = Dim("h_blocks", min=lo, max=8192 // multiple) * multiple
    w = Dim("w_blocks", min=lo, max=8192 // multiple) * multiple
    b = Dim("batch", min=1, max=1024) if spec["dynamic_batch"] else None
    image_dims = {2: h, 3: w, **({0: b} if b is not None else {})}
    shapes = [image_dims, dict(image_dims)]
    for value, how in extras.values():  # stored inputs are shared by the batch (leading dimension 1)
        dims = {0: b} if b is not None and how != "stored" else {}
        if value.dim() == 4 and how != "stored":
            dims.update({2: h, 3: w})
        shapes.append(dims or None)
    return tuple(shapes)


def _export_onnx(model, spec, masked_image, mask, extras, path, dynamic, multiple, opset, metadata):
    import onnx
    from onnx import numpy_helper

    names = ["image", "mask", *extras]
    wrapper = Deployable(model, extras, spec["call"]).eval()
    args = (masked_image, mask, *(v for v, _how in extras.values()))
    if spec["exporter"] == "torchscript":
        axes = {}
        per_sample = ["image", "mask", *(k for k, (_v, how) in extras.items() if how != "stored")]
        for name, value in zip(names, args):
            dims = {0: "batch"} if spec["dynamic_batch"] and name in per_sample else {}
            if dynamic and value.dim() == 4 and name in per_sample:
                dims.update({2: "height", 3: "width"})
            if dims:
                axes[name] = dims
        out_dims = {0: "batch"} if spec["dynamic_batch"] else {}
        if dynamic:
            out_dims.update({2: "height", 3: "width"})
        if out_dims:
            axes["inpainted"] = out_dims
        import warnings

        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                              output_names=["inpainted"], dynamic_axes=axes or None)
    else:
        shapes = _dynamic_spec(spec, multiple, extras) if dynamic else None
        if shapes is None and spec["dynamic_batch"]:
            from torch.export import Dim

            b = Dim("batch", min=1, max=1024)
            shapes = tuple({0: b} if name in ("image", "mask") else None for name in names)
        with _quiet():
            program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=opset, input_names=names,
                                        output_names=["inpainted"], dynamic_shapes=shapes)
        program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    # stored inputs keep their names as graph inputs and get the example as an initializer: a default that a
    # caller may override (ONNX IR >= 4)
    for name, (value, how) in extras.items():
        if how == "stored":
            proto.graph.initializer.append(numpy_helper.from_array(value.numpy(), name))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"zoo.{key}", str(value)
    onnx.save(proto, str(path))


def _export_torchscript(model, spec, masked_image, mask, extras, path, metadata):
    import warnings

    stored = {k: v for k, (v, how) in extras.items() if how == "stored"}
    inputs = {k: v for k, (v, how) in extras.items() if how != "stored"}
    wrapper = Deployable(model, inputs, spec["call"], constants=stored).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (masked_image, mask, *inputs.values()), check_trace=False)
    meta = dict(metadata, inputs=json.dumps({k: v for k, v in json.loads(metadata["inputs"]).items()
                                             if k not in stored}))
    torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})


# ---------------------------------------------------------------------------------------------------------
# Reading exported files


def read_metadata(path) -> dict:
    """The zoo metadata of an exported ONNX or TorchScript file; a one-line error if it is not a zoo export."""
    path = Path(path)
    if not path.is_file():
        raise NotAZooExportError(f"exported model {path} does not exist")
    import zipfile

    if zipfile.is_zipfile(path):  # a TorchScript archive
        files = {EXTRA_FILE: ""}
        try:
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except Exception as exc:
            raise NotAZooExportError(f"{path} is not a readable TorchScript file ({_first_line(exc)})") from None
        meta = json.loads(files[EXTRA_FILE]) if files[EXTRA_FILE] else {}
    else:
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception:
            raise NotAZooExportError(f"{path} is not an ONNX or TorchScript file") from None
        meta = {p.key[4:]: p.value for p in proto.metadata_props if p.key.startswith("zoo.")}
    if meta.get("format") != FORMAT or "preset" not in meta:
        raise NotAZooExportError(f"{path} is not a zoo export (no inpaint-zoo metadata: preset, size rule, mask "
                                 f"convention); write one with `zoo export`")
    return meta


class OnnxGenerator(nn.Module):
    """An exported ONNX file run by onnxruntime, usable where a zoo generator is (``zoo.inpaint``, evaluation).

    ``G(masked_image, mask, **extras) -> InpaintOutput`` whose only stage is the file's output (already
    composited: compositing again changes nothing). Extras not given get their default (``z``: drawn from
    torch's generator, so seeds behave as with the PyTorch model). ``zoo_name`` and ``zoo_size_multiple`` come
    from the file's metadata."""

    def __init__(self, path, device="cpu", threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata = read_metadata(path)
        if self.metadata.get("exporter") == "torch.jit.trace":
            raise NotAZooExportError(f"{path} is a TorchScript export; --onnx takes an ONNX export "
                                     f"(load TorchScript with torch.jit.load)")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 4  # errors reach the caller as exceptions
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        meta = self.metadata
        self.zoo_name = meta["preset"]
        self.height, self.width = int(meta["height"]), int(meta["width"])
        self.dynamic = meta["dynamic"] == "true"
        self.dynamic_batch = meta.get("dynamic_batch") == "true"
        multiple = int(meta["size_multiple"])
        self.zoo_size_multiple = multiple if self.dynamic else 1  # a fixed-size file: no padding, one size
        self.extras = {k: v for k, v in json.loads(meta["inputs"]).items() if k not in ("image", "mask")}
        self.zoo_inputs = tuple(self.extras)

    def extra_repr(self):
        return f"{self.path}, preset={self.zoo_name}, size rule: {self.metadata['size_rule']}"

    def _check(self, masked_image, mask):
        h, w = masked_image.shape[-2:]
        if masked_image.dim() != 4 or masked_image.shape[1] != 3 or mask.shape[-2:] != (h, w):
            raise InputSizeError(f"{self.path.name} takes image N x 3 x H x W and mask N x 1 x H x W, got "
                                 f"{tuple(masked_image.shape)} and {tuple(mask.shape)}")
        if self.dynamic and (h % int(self.metadata["size_multiple"]) or w % int(self.metadata["size_multiple"])):
            raise InputSizeError(f"{self.path.name} takes sizes that are multiples of "
                                 f"{self.metadata['size_multiple']}, got {h}x{w}")
        if not self.dynamic and (h, w) != (self.height, self.width):
            raise InputSizeError(f"{self.path.name} ({self.zoo_name}) takes {self.metadata['size_rule']}, got "
                                 f"{h}x{w}: resize the image or export at --size {h} {w}")

    def forward(self, masked_image, mask, **extras) -> InpaintOutput:
        self._check(masked_image, mask)
        unknown = set(extras) - set(self.extras)
        if unknown:
            raise ZooError(f"{self.path.name} ({self.zoo_name}) takes no {', '.join(sorted(unknown))}")
        n = masked_image.shape[0]
        feeds = {"image": masked_image.detach().float().cpu().numpy(), "mask": mask.detach().float().cpu().numpy()}
        for name, info in self.extras.items():
            value = extras.get(name)
            if value is None and info["default"] == "normal":
                value = torch.randn(n, *info["shape"][1:])
            elif value is None and info["default"] == "zeros":
                value = torch.zeros(n, *info["shape"][1:])
            if value is not None:
                feeds[name] = value.detach().float().cpu().numpy()
        if self.dynamic_batch or n == 1:
            out = self.session.run(["inpainted"], feeds)[0]
        else:  # a batch-1 export (MAT's grouped modulated convolutions): one sample at a time
            out = torch.cat([torch.from_numpy(self.session.run(["inpainted"], {
                k: v[i : i + 1] if v.shape[0] == n else v for k, v in feeds.items()})[0]) for i in range(n)]).numpy()
        return InpaintOutput(stages=(torch.from_numpy(out).to(masked_image.device),))
