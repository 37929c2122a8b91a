"""Perceptual and style losses on frozen VGG16 / VGG19 features.

The families differ in network, layers, layer weights and input normalisation, so all are arguments.
Layer names follow the usual convention: ``conv3_2``, ``relu3_2``, ``pool3`` (VGG19 has four convolutions
in blocks 3-5). Images arrive in [-1, 1] and are mapped to [0, 1]; ``normalize="imagenet"`` then applies
the ImageNet mean / std (DeepFill-era and MAT code), ``"none"`` feeds [0, 1] directly (HINT).

Weights come through ``zoo.weights.resolve_weights``. Without them an extractor may still be built with
random weights (``allow_random=True``), which the trainer reports in the run config and log.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from zoo.errors import WeightsNotFoundError
from zoo.weights import KNOWN_WEIGHTS, load_state_dict, missing_message, resolve_weights

_BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layer_names(network: str) -> list[str]:
    """Names of ``torchvision.models.<network>().features`` modules, in order."""
    names = []
    for block, convs in enumerate(_BLOCK_CONVS[network], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG truncated after the deepest requested layer; returns ``{layer: features}``."""

    def __init__(self, network: str = "vgg16", normalize: str = "imagenet", weights_path=None,
                 allow_random: bool = True):
        super().__init__()
        if network not in _BLOCK_CONVS:
            raise ValueError(f"network must be vgg16 or vgg19, got {network!r}")
        self.network, self.names = network, vgg_layer_names(network)
        filename, url = KNOWN_WEIGHTS[network]
        path = resolve_weights(filename, weights_path, url)
        if path is None and not allow_random:
            raise WeightsNotFoundError(missing_message(filename, url, "--set weights_dir=DIR"))
        # Only the convolutional part: the classifier (~120M parameters) is never used.
        features = make_layers(cfgs["D" if network == "vgg16" else "E"])
        if path is not None:
            state = load_state_dict(path)
            features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
            self.weights_source = str(path)
        else:
            self.weights_source = "random"
            warnings.warn(f"{missing_message(filename, url, '--set weights_dir=DIR')}; using a RANDOM {network}",
                          stacklevel=2)
            with torch.random.fork_rng(devices=[]):  # seeded: a random extractor is the same in every run
                torch.manual_seed(0)
                for conv in features:
                    if isinstance(conv, nn.Conv2d):  # torchvision's VGG initialisation
                        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                        nn.init.zeros_(conv.bias)
        self.features = features.eval().requires_grad_(False)
        if normalize not in ("imagenet", "none"):
            raise ValueError("normalize must be 'imagenet' or 'none'")
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def forward(self, image01: torch.Tensor, layers) -> dict:
        unknown = set(layers) - set(self.names)
        if unknown:
            raise ValueError(f"unknown {self.network} layers {sorted(unknown)}; known: {self.names}")
        x = (image01 - self.mean) / self.std if self.normalize == "imagenet" else image01
        wanted, last = set(layers), max(self.names.index(n) for n in layers)
        out = {}
        for name, module in zip(self.names[: last + 1], self.features):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out


def gram(features: torch.Tensor) -> torch.Tensor:
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def perceptual_distance(feats_pred: dict, feats_target: dict, layers, layer_weights=None):
    weights = layer_weights or [1.0] * len(layers)
    return sum(w * (feats_pred[l] - feats_target[l]).abs().mean() for l, w in zip(layers, weights))


def style_distance(feats_pred: dict, feats_target: dict, layers, layer_weights=None):
    weights = layer_weights or [1.0] * len(layers)
    return sum(w * (gram(feats_pred[l]) - gram(feats_target[l])).abs().mean() for l, w in zip(layers, weights))
