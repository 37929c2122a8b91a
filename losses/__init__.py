"""Generator and discriminator losses, assembled from a preset's recipe.

``GeneratorLoss(recipe.losses)`` evaluates the reconstruction / feature terms of a recipe on an
``InpaintOutput``; the adversarial side lives in ``losses.adversarial``.
"""

from __future__ import annotations

import torch
from torch import nn

from losses import adversarial, reconstruction
from losses.perceptual import VGGFeatures, perceptual_distance, style_distance
from zoo.contract import composite
from zoo.errors import UnknownNameError, ZooError

PIXEL_LOSSES = {"l1": reconstruction.l1, "discounted_l1": reconstruction.discounted_l1}
FEATURE_LOSSES = {"perceptual": perceptual_distance, "style": style_distance}
RECONSTRUCTION_LOSSES = sorted(PIXEL_LOSSES) + sorted(FEATURE_LOSSES)

# Defaults of a feature term; a recipe overrides any of them in LossTerm.kwargs.
FEATURE_DEFAULTS = dict(network="vgg16", normalize="imagenet", layer_weights=None, masked=False,
                        layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))


def term_names(terms) -> list[str]:
    """Log names such as ``l1/0`` (term name / stage), made unique when a recipe repeats one."""
    names = []
    for term in terms:
        base = f"{term.name}/{term.stage}"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}#{k}"
        names.append(name)
    return names


class GeneratorLoss(nn.Module):
    def __init__(self, terms, weights_dir=None, allow_random_vgg: bool = True):
        super().__init__()
        for term in terms:
            if term.name not in PIXEL_LOSSES and term.name not in FEATURE_LOSSES:
                raise UnknownNameError("loss", term.name, RECONSTRUCTION_LOSSES)
            if term.on not in ("raw", "composite"):
                raise ZooError(f"loss term 'on' must be 'raw' or 'composite', got {term.on!r}")
        terms = tuple(t for t in terms if t.weight)  # a term weighted 0 is not computed (nor its VGG loaded)
        self.terms, self.names = terms, term_names(terms)
        self.extractors = nn.ModuleDict()
        for term in self.terms:
            if term.name in FEATURE_LOSSES:
                opts = {**FEATURE_DEFAULTS, **term.kwargs}
                key = f"{opts['network']}_{opts['normalize']}"
                if key not in self.extractors:
                    self.extractors[key] = VGGFeatures(opts["network"], opts["normalize"], weights_dir,
                                                       allow_random=allow_random_vgg)

    @property
    def weights_sources(self) -> dict:
        return {key: ex.weights_source for key, ex in self.extractors.items()}

    def _feature_requests(self):
        """Group feature terms that can share one VGG pass: (extractor, stage, on, masked) -> layers."""
        requests = {}
        for term in self.terms:
            if term.name in FEATURE_LOSSES:
                opts = {**FEATURE_DEFAULTS, **term.kwargs}
                key = (f"{opts['network']}_{opts['normalize']}", term.stage, term.on, opts["masked"])
                requests.setdefault(key, set()).update(opts["layers"])
        return requests

    def forward(self, output, image, mask):
        """Return the weighted total and a dict of the unweighted terms (for logging)."""
        features = {}
        for (extractor, stage, on, masked), layers in self._feature_requests().items():
            pred = self._select(output, image, mask, stage, on)
            pred01, target01 = (pred + 1) / 2, (image + 1) / 2
            if masked:
                pred01, target01 = pred01 * mask, target01 * mask
            net = self.extractors[extractor]
            with torch.no_grad():
                target_feats = net(target01, sorted(layers))
            features[(extractor, stage, on, masked)] = (net(pred01, sorted(layers)), target_feats)

        total, values = 0.0, {}
        for term, name in zip(self.terms, self.names):
            if term.name in PIXEL_LOSSES:
                pred = self._select(output, image, mask, term.stage, term.on)
                value = PIXEL_LOSSES[term.name](pred, image, mask, **term.kwargs)
            else:
                opts = {**FEATURE_DEFAULTS, **term.kwargs}
                key = (f"{opts['network']}_{opts['normalize']}", term.stage, term.on, opts["masked"])
                value = FEATURE_LOSSES[term.name](*features[key], opts["layers"], opts["layer_weights"])
            values[name] = value.detach()
            total = total + term.weight * value
        return total, values

    @staticmethod
    def _select(output, image, mask, stage, on):
        pred = output.stages[stage]
        return composite(image, pred, mask) if on == "composite" else pred


__all__ = ["GeneratorLoss", "RECONSTRUCTION_LOSSES", "adversarial", "reconstruction"]
