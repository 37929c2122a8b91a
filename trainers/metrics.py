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
  TF1-compatible resize to 299) and its formulas; KID uses 100 subsets of min(1000, n) pairs, fixed seed.
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


class LPIPS:
    """torchmetrics' LPIPS network with its backbone loaded through the weights resolver.

    The linear heads ship inside the torchmetrics wheel; the ImageNet backbone (AlexNet / VGG16 /
    SqueezeNet from torchvision) is the file that has to be on this machine.
    """

    def __init__(self, net: str = "alex", weights_path=None, device="cpu"):
        import torchvision
        from torchmetrics.functional.image.lpips import _NoTrainLpips

        if net not in LPIPS_BACKBONES:
            raise WeightsNotFoundError(f"LPIPS network must be one of {', '.join(LPIPS_BACKBONES)}, got {net!r}")
        self.net_name = net
        path, self.missing = _weights(LPIPS_BACKBONES[net], weights_path, "--lpips-weights")
        self.path = path
        if path is None:
            return
        backbone = getattr(torchvision.models, LPIPS_BACKBONES[net])(weights=None)
        state = load_state_dict(path)
        try:
            backbone.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise WeightsNotFoundError(f"{path} does not hold {LPIPS_BACKBONES[net]} weights: {first}") from None
        # pnet_rand: build the backbone without torchvision's download, then copy the resolved weights in.
        self.model = _NoTrainLpips(net=net, pnet_rand=True)
        features = backbone.features
        for part in self.model.net.children():
            for index, layer in part.named_children():
                layer.load_state_dict(features[int(index)].state_dict())
        self.model = self.model.eval().to(device)
        self.hash = file_sha256(str(path), os.stat(path).st_mtime_ns)

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


class InceptionFeatures:
    """torch-fidelity's FID Inception-v3 (2048-d pool features) with weights from the resolver."""

    def __init__(self, weights_path=None, device="cpu"):
        path, self.missing = _weights(INCEPTION_KEY, weights_path, "--inception-weights")
        self.path = path
        if path is None:
            return
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        load_state_dict(path)  # tensors only: refuse a pickle that carries code before torch-fidelity loads it
        try:
            model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                feature_extractor_weights_path=str(path))
        except RuntimeError as exc:
            lines = str(exc).splitlines()
            raise WeightsNotFoundError(f"{path} does not hold FID Inception-v3 weights: "
                                       f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
        self.model = model.eval().to(device)
        self.hash = file_sha256(str(path), os.stat(path).st_mtime_ns)

    @torch.no_grad()
    def __call__(self, image01: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        (features,) = self.model(to_uint8(image01).to(device))
        return features.double().cpu().numpy()


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float | None:
    """Fréchet distance between Gaussian fits (torch-fidelity's formula); None below 2 samples."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    if len(real) < 2 or len(fake) < 2:
        return None
    stats = [fid_features_to_statistics(torch.from_numpy(np.asarray(f, np.float64))) for f in (real, fake)]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


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
