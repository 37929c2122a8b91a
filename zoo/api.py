"""The inference API: ``load`` a generator by name (and checkpoint), ``inpaint`` any size of image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.contract import check_binary_mask, check_inputs, composite
from zoo.hub import load_model
from zoo.registry import get_preset


def load(name: str | None = None, checkpoint=None, device="cpu", ema: bool = True, pretrained=None,
         **overrides) -> nn.Module:
    """Build preset ``name`` with weights from ``checkpoint`` (any SOURCE, see ``zoo.hub``); eval mode.

    ``load("mat", pretrained="places512")``, ``load("mat.places512")``, ``load("hf-hub:ORG/REPO")``,
    ``load("local-dir:DIR")``, ``load(name, checkpoint=PATH | TAG | hf-hub:... | local-dir:...)``.
    A zoo checkpoint or published folder rebuilds the generator with the arguments it was trained with
    (width, size); ``overrides`` win over those. The EMA generator is used when there is one and ``ema``.
    """
    return load_model(name, checkpoint, pretrained=pretrained, ema=ema, **overrides).eval().to(device)


def _pad(x, pad_h, pad_w):
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def inpaint(model: nn.Module, image: torch.Tensor, mask: torch.Tensor, **conditioning) -> torch.Tensor:
    """Complete ``image`` (N x 3 x H x W in [-1, 1]) where ``mask`` (N x 1 x H x W, 1 = hole) is set.

    Any H, W: the input is padded (reflection) to the model's size multiple and the result cropped back.
    Returns the composite: known pixels unchanged, holes from the generator.
    """
    check_inputs(image, mask)
    check_binary_mask(mask)
    multiple = getattr(model, "zoo_size_multiple", None) or get_preset(model.zoo_name).size_multiple
    h, w = image.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    padded_mask = _pad(mask, pad_h, pad_w)  # reflected holes stay holes
    padded_image = _pad(image * (1 - mask), pad_h, pad_w)
    conditioning = {k: _pad(v, pad_h, pad_w) if torch.is_tensor(v) and v.dim() == 4 and v.shape[-2:] == (h, w)
                    else v for k, v in conditioning.items()}
    device = next(iter(model.parameters()), torch.empty(0)).device  # (an ONNX-backed model has none)
    out = model(padded_image.to(device), padded_mask.to(device),
                **{k: v.to(device) if torch.is_tensor(v) else v for k, v in conditioning.items()})
    final = out.final[..., :h, :w].to(image.device)
    return composite(image, final, mask)
