"""Inpainting metrics: per-pair pixel metrics (whole image and hole only) and set metrics on Inception features.

Conventions (chosen where papers differ; stated so that numbers can be reproduced):

* Both images are put on the 8-bit grid first (what a saved PNG holds) and scaled to [0, 1].
* ``l1``: 100 * mean |completed - target| over pixels and channels (the "L1 (%)" of RA / mmagic);
  ``l1_hole``: the same over hole pixels only.
* ``psnr``: 10 log10(1 / MSE) per image (data range 1), averaged over images; the MSE is floored at
  1e-10, so identical images score 100 dB instead of inf and averages stay finite.
* ``ssim``: pytorch-msssim (11 x 11 Gaussian window, sigma 1.5, valid region, mean over RGB);
  ``ssim_hole``: kornia's SSIM map (same window, reflect padding) averaged over the hole.
* ``ms_ssim``: pytorch-msssim with its five default scales, only when the shorter side exceeds 160 px.
* ``lpips``: torchmetrics' LPIPS network (AlexNet by default, as MAT's evaluation script; ``vgg`` and
  ``squeeze`` too), inputs in [-1, 1]; ``lpips_hole``: its spatial map averaged over the hole.
* ``fid`` / ``kid``: torch-fidelity's Inception-v3 port of the TF FID graph (2048-d pool features, its
  TF1-compatible resize to 299); FID by torch-fidelity's definition (computed through symmetric
  factorisations, see ``fid_from_features``), KID by torch-fidelity with 100 subsets of min(1000, n)
  pairs and a fixed seed.
  Published MAT/CoModGAN numbers use NVIDIA's TorchScript port: close, not bit-identical.
* ``p_ids`` / ``u_ids``: CoModGAN's definitions with scikit-learn's ``LinearSVC(dual=False)`` fitted on
  all real (1) and completed (0) features; U-IDS = its error rate, P-IDS = the fraction of pairs whose
  completed image scores above its real image. Reported in percent, like the papers.

Pretrained extractors come through ``zoo.weights.resolve_weights`` (explicit path, then the torch hub
cache under the standard file name); when a file is missing the metrics that need it are skipped with a
message naming the file, and the others still run.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from zoo.errors import WeightsNotFoundError
from zoo.weights import KNOWN_WEIGHTS, load_state_dict, missing_message, resolve_weights

PIXEL_METRICS = ("l1", "l1_hole", "psnr", "psnr_hole", "ssim", "ssim_hole", "ms_ssim")
LPIPS_METRICS = ("lpips", "lpips_hole")
SET_METRICS = ("fid", "kid", "p_ids", "u_ids")
ALL_METRICS = PIXEL_METRICS + LPIPS_METRICS + SET_METRICS
HIGHER_IS_BETTER = {"psnr", "psnr_hole", "ssim", "ssim_hole", "ms_ssim", "p_ids", "u_ids"}
TITLES = {"l1": "L1 (%)", "l1_hole": "L1 hole (%)", "psnr": "PSNR", "psnr_hole": "PSNR hole", "ssim": "SSIM",
          "ssim_hole": "SSIM hole", "ms_ssim": "MS-SSIM", "lpips": "LPIPS", "lpips_hole": "LPIPS hole",
          "fid": "FID", "kid": "KID", "p_ids": "P-IDS (%)", "u_ids": "U-IDS (%)"}
DECIMALS = {"ssim": 4, "ssim_hole": 4, "ms_ssim": 4, "lpips": 4, "lpips_hole": 4, "kid": 5}
MS_SSIM_MIN_SIDE = 161  # pytorch-msssim: the shorter side must exceed (11 - 1) * 2 ** 4
PSNR_MSE_FLOOR = 1e-10
INCEPTION_KEY = "inception_fid"
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def quantize(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] on the 8-bit grid."""
    return torch.round((image.clamp(-1, 1) + 1) * 127.5) / 255


def to_uint8(image01: torch.Tensor) -> torch.Tensor:
    return torch.round(image01 * 255).to(torch.uint8)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of ``values`` (N x C x H x W) where ``mask`` (N x 1 x H x W) is 1; NaN if empty."""
    weight = mask.expand_as(values).to(values.dtype)
    total = weight.flatten(1).sum(1)
    return (values * weight).flatten(1).sum(1) / total.where(total > 0, torch.tensor(float("nan")))


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / mse.clamp_min(PSNR_MSE_FLOOR))


def pixel_metrics(pred01: torch.Tensor, target01: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 / PSNR / SSIM (+ MS-SSIM when the size allows), whole image and hole, one value per sample."""
    import kornia
    from pytorch_msssim import ms_ssim, ssim

    pred01, target01 = pred01.double(), target01.double()
    diff = pred01 - target01
    full = torch.ones_like(mask)
    out = {
        "l1": 100 * diff.abs().flatten(1).mean(1),
        "l1_hole": 100 * masked_mean(diff.abs(), mask),
        "psnr": psnr_from_mse(masked_mean(diff**2, full)),
        "psnr_hole": psnr_from_mse(masked_mean(diff**2, mask)),
        "ssim": ssim(pred01, target01, data_range=1.0, size_average=False),
        "ssim_hole": masked_mean(kornia.metrics.ssim(pred01, target01, 11, max_val=1.0), mask),
    }
    if min(pred01.shape[-2:]) >= MS_SSIM_MIN_SIDE:
        out["ms_ssim"] = ms_ssim(pred01, target01, data_range=1.0, size_average=False)
    return {k: v.float().cpu() for k, v in out.items()}


@functools.lru_cache(maxsize=8)
def file_sha256(path: str, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _weights(key: str, path, option: str) -> tuple[Path | None, str | None]:
    """(path, None) or (None, why): the one place where metric weights are looked up."""
    filename, url = KNOWN_WEIGHTS[key]
    found = resolve_weights(filename, path, url, option=option)
    return (found, None) if found is not None else (None, missing_message(filename, url, option))


@functools.lru_cache(maxsize=2)
def _lpips_network(net: str, path: str, mtime_ns: int, device: str) -> torch.nn.Module:
    """Built once per (file, device) in a process, so that eval and compare calls share it."""
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    backbone = getattr(torchvision.models, LPIPS_BACKBONES[net])(weights=None)
    try:
        backbone.load_state_dict(load_state_dict(Path(path)))
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise WeightsNotFoundError(f"{path} does not hold {LPIPS_BACKBONES[net]} weights: "
                                   f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
    # pnet_rand: torchmetrics builds the backbone without its download; the resolved weights are copied in.
    model = _NoTrainLpips(net=net, pnet_rand=True)
    for part in model.net.children():
        for index, layer in part.named_children():
            layer.load_state_dict(backbone.features[int(index)].state_dict())
    return model.eval().to(device)


class LPIPS:
    """torchmetrics' LPIPS network with its backbone loaded through the weights resolver.

    The linear heads ship inside the torchmetrics wheel; the ImageNet backbone (AlexNet / VGG16 /
    SqueezeNet from torchvision) is the file that has to be on this machine.
    """

    def __init__(self, net: str = "alex", weights_path=None, device="cpu"):
        if net not in LPIPS_BACKBONES:
            raise WeightsNotFoundError(f"LPIPS network must be one of {', '.join(LPIPS_BACKBONES)}, got {net!r}")
        self.net_name = net
        self.path, self.missing = _weights(LPIPS_BACKBONES[net], weights_path, "--lpips-weights")
        if self.path is not None:
            mtime = os.stat(self.path).st_mtime_ns
            self.model = _lpips_network(net, str(self.path), mtime, str(device))
            self.hash = file_sha256(str(self.path), mtime)

    @torch.no_grad()
    def __call__(self, pred01: torch.Tensor, target01: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        device = next(self.model.parameters()).device
        a, b = (pred01 * 2 - 1).float().to(device), (target01 * 2 - 1).float().to(device)
        self.model.spatial = False
        whole = self.model(a, b).flatten()
        self.model.spatial = True
        spatial = self.model(a, b)
        self.model.spatial = False
        return {"lpips": whole.cpu(), "lpips_hole": masked_mean(spatial.cpu().double(), mask.cpu()).float()}


@functools.lru_cache(maxsize=2)
def _inception_network(path: str, mtime_ns: int, device: str) -> torch.nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    load_state_dict(Path(path))  # tensors only: refuse a pickle that carries code before torch-fidelity loads it
    try:
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise WeightsNotFoundError(f"{path} does not hold FID Inception-v3 weights: "
                                   f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
    return model.eval().to(device)


class InceptionFeatures:
    """torch-fidelity's FID Inception-v3 (2048-d pool features) with weights from the resolver."""

    def __init__(self, weights_path=None, device="cpu"):
        self.path, self.missing = _weights(INCEPTION_KEY, weights_path, "--inception-weights")
        if self.path is not None:
            mtime = os.stat(self.path).st_mtime_ns
            self.model = _inception_network(str(self.path), mtime, str(device))
            self.hash = file_sha256(str(self.path), mtime)

    @torch.no_grad()
    def __call__(self, image01: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        (features,) = self.model(to_uint8(image01).to(device))
        return features.float().cpu().numpy()  # float32 (what the network computes); metrics use float64


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float | None:
    """Fréchet distance between Gaussian fits of two feature sets (torch-fidelity's definition, unbiased
    covariances); None below 2 samples.

    torch-fidelity takes tr sqrt(S1 S2) from the eigenvalues of the non-symmetric d x d product, which
    costs tens of seconds per call at d = 2048 on a CPU (and FID is computed per bucket). The same trace is
    taken here from symmetric problems: with fewer samples than dimensions it is the nuclear norm of
    X1 X2^T / sqrt((n1 - 1)(n2 - 1)) (X = centred features, an n1 x n2 SVD), otherwise the sum of the
    square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2). A test checks both against torch-fidelity.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) < 2 or len(fake) < 2:
        return None
    x1, x2 = real - real.mean(0), fake - fake.mean(0)
    c1, c2 = len(real) - 1, len(fake) - 1
    if max(len(real), len(fake)) < real.shape[1]:
        trace_sqrt = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    else:
        w, v = np.linalg.eigh(x1.T @ x1 / c1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ (x2.T @ x2 / c2) @ root), 0, None)).sum()
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + (x1**2).sum() / c1 + (x2**2).sum() / c2 - 2 * trace_sqrt)


def kid_from_features(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 2020) -> float | None:
    """Unbiased polynomial-kernel MMD (torch-fidelity); subsets shrink to the set size. None below 2."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    n = min(len(real), len(fake))
    if n < 2:
        return None
    out = kid_features_to_metric(torch.from_numpy(np.asarray(real, np.float64)),
                                 torch.from_numpy(np.asarray(fake, np.float64)), kid_subsets=subsets,
                                 kid_subset_size=min(subset_size, n), rng_seed=seed, verbose=False)
    return float(out["kernel_inception_distance_mean"])


def inception_discriminative_scores(real: np.ndarray, fake: np.ndarray) -> tuple[float, float] | None:
    """(P-IDS, U-IDS) as fractions, for paired features (row i of ``fake`` is the completion of row i of
    ``real``). None when there is no pair."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) != len(fake):
        raise ValueError("P-IDS needs paired real and completed features")
    if len(real) < 1:
        return None
    inputs = np.concatenate([real, fake])
    targets = np.array([1] * len(real) + [0] * len(fake))
    svm = LinearSVC(dual=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(inputs, targets)
    u_ids = 1 - svm.score(inputs, targets)
    p_ids = np.mean(svm.decision_function(fake) > svm.decision_function(real))
    return float(p_ids), float(u_ids)


def set_metrics(real: np.ndarray, fake: np.ndarray, wanted=SET_METRICS, kid_seed: int = 2020) -> dict:
    out = {}
    if "fid" in wanted:
        out["fid"] = fid_from_features(real, fake)
    if "kid" in wanted:
        out["kid"] = kid_from_features(real, fake, seed=kid_seed)
    if {"p_ids", "u_ids"} & set(wanted):
        ids = inception_discriminative_scores(real, fake)
        out["p_ids"], out["u_ids"] = (None, None) if ids is None else (100 * ids[0], 100 * ids[1])
    return {k: v for k, v in out.items() if k in wanted}


def summarize(per_pair: dict[str, np.ndarray], buckets: list, labels: list[str], real_features=None,
              fake_features=None, wanted=ALL_METRICS) -> dict:
    """Means of the per-pair metrics and the set metrics, overall and per bucket (``labels`` order).

    Buckets without pairs are left out; set metrics that need more pairs than a bucket has are None.
    """
    buckets = np.array(buckets, dtype=object)

    def block(index):
        row = {"n": int(len(index))}
        for name, values in per_pair.items():
            v = np.asarray(values, np.float64)[index]
            v = v[np.isfinite(v)]
            row[name] = float(v.mean()) if len(v) else None
        if real_features is not None and fake_features is not None:
            row.update(set_metrics(real_features[index], fake_features[index],
                                   [m for m in wanted if m in SET_METRICS]))
        return row

    everything = np.arange(len(buckets))
    result = {"overall": block(everything), "buckets": {}}
    for label in labels:
        index = everything[buckets == label]
        if len(index):
            result["buckets"][label] = block(index)
    return result


def format_value(name: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.{DECIMALS.get(name, 2)}f}"
