"""One resolver for pretrained feature-extractor weights (VGG for losses, Inception / LPIPS for metrics).

Order: an explicit path wins; then the torch hub cache under the file's standard name; then a download
when the machine is online (not when ``HF_HUB_OFFLINE`` or ``ZOO_OFFLINE`` is set). Callers decide what a
miss means: training losses may fall back to a random extractor with a warning, metrics are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from zoo.errors import WeightsNotFoundError

KNOWN_WEIGHTS = {
    "vgg16": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "vgg19": ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    # Metrics: LPIPS backbones (torchvision files) and torch-fidelity's port of the TF FID Inception-v3.
    "alexnet": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "squeezenet1_1": ("squeezenet1_1-b8a52dc0.pth",
                      "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
    "inception_fid": ("weights-inception-2015-12-05-6726825d.pth",
                      "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                      "weights-inception-2015-12-05-6726825d.pth"),
}


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def missing_message(filename: str, url: str | None, option: str) -> str:
    where = hub_checkpoint_dir() / filename
    source = f" (from {url})" if url else ""
    return f"weights file {filename} not found: put it at {where}{source} or pass {option} PATH"


def resolve_weights(filename: str, path: str | os.PathLike | None = None, url: str | None = None,
                    option: str = "--set losses.weights_dir=DIR") -> Path | None:
    """Return a local path to ``filename``, or None when it is not available on this machine."""
    if path is not None:
        path = Path(path)
        if path.is_dir():
            path = path / filename
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} does not exist")
        return path
    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    if url and not offline():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return cached
        except Exception:  # no network: report as missing
            cached.unlink(missing_ok=True)
    return None


def load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(f"cannot read weights file {path}: {exc.__class__.__name__}") from None
    return state
