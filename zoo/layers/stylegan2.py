"""StyleGAN2 building blocks (Karras et al., CVPR 2020) as the StyleGAN2-ADA code defines them, in pure PyTorch.

* Equalised learning rate: weights are stored N(0, 1) (divided by the lr multiplier) and scaled at run time by
  ``lr_multiplier / sqrt(fan_in)``; biases by ``lr_multiplier``.
* ``lrelu`` is leaky ReLU (slope 0.2) followed by a gain of sqrt(2), which keeps activations at unit variance.
* Resampling is FIR filtering with the normalised binomial [1, 3, 3, 1] filter: a 2x down-sampling convolution
  filters then strides, a 2x up-sampling convolution is a transposed convolution followed by the filter. The
  operations follow the order of the official ``conv2d_resample`` fast paths (only ``torch.nn.functional``,
  no custom CUDA ops), so a converted network reproduces the official output to float rounding.
* Attribute and buffer names (``weight``, ``bias``, ``resample_filter``, ``affine``) are the official ones, so
  state dicts of StyleGAN2-ADA-based models (MAT) load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2)}


def bias_act(x: torch.Tensor, bias: torch.Tensor | None = None, activation: str = "linear", gain: float | None = None,
             dim: int = 1, inplace: bool = False) -> torch.Tensor:
    """Add ``bias`` along ``dim``, apply the activation, multiply by ``gain`` (default: the activation's own).

    ``inplace=True`` may overwrite ``x`` (for a fresh result the caller owns, such as a convolution's output):
    ``x * 2`` on MAT's 180 x 512 x 512 took 42-111 ms into a new tensor on the CPU (page faults), 17-18 ms into an
    existing one; with huge pages (``THP_MEM_ALLOC_ENABLE=1``, as the ``zoo`` command sets) 21 ms."""
    if activation not in ACTIVATION_GAINS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATION_GAINS)}, got {activation!r}")
    gain = ACTIVATION_GAINS[activation] if gain is None else gain
    if bias is not None:
        bias = bias.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        x = x.add_(bias) if inplace else x + bias
    if activation == "lrelu":
        # the in-place leaky ReLU keeps its output for backward, which the gain below would then overwrite
        x = F.leaky_relu_(x, 0.2) if inplace and not (torch.is_grad_enabled() and x.requires_grad) \
            else F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    return x


def fir_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """The 2-D low-pass filter (outer product of ``taps``), normalised to unit DC gain."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding=(0, 0, 0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Zero-insert up-sample by ``up``, pad (x0, x1, y0, y1; negative crops), filter with ``f``, keep every
    ``down``-th pixel. The reference formulation of StyleGAN2's ``upfirdn2d``, with a depthwise ``conv2d``."""
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    kernel = (f * gain).flip([0, 1]).to(x.dtype)  # convolution, not correlation (the filter is symmetric anyway)
    depthwise = kernel[None, None].expand(int(c), 1, *kernel.shape)  # int(c): a constant in traced graphs
    if up == 1 and px0 == px1 == py0 == py1 >= 0:
        # the same zero padding done by the convolution: no padded copy of x (MAT's synthesis at 512 px: ~1 s)
        x = F.conv2d(x, depthwise, padding=px0, groups=int(c))
        return x[:, :, ::down, ::down] if down > 1 else x
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    x = F.conv2d(x, depthwise, groups=int(c))
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR up-sampling that keeps the image centred (the RGB skip path of StyleGAN2's generator)."""
    k = f.shape[-1]
    p = ((k + up - 1) // 2, (k - up) // 2)
    return upfirdn2d(x, f, up=up, padding=(p[0], p[1], p[0], p[1]), gain=up**2)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
                    padding: int = 0, groups: int = 1) -> torch.Tensor:
    """Convolution with optional 2x FIR up- or down-sampling, padding taken w.r.t. the up-sampled image."""
    out_channels, in_per_group, kh, kw = w.shape
    k = f.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (k + up - 1) // 2, p1 + (k - up) // 2
    if down > 1:
        p0, p1 = p0 + (k - down + 1) // 2, p1 + (k - down) // 2
    pad = (p0, p1, p0, p1)
    if down > 1 and up == 1:
        if kh == 1 and kw == 1:  # 1x1: down-sample first, then convolve
            return F.conv2d(upfirdn2d(x, f, down=down, padding=pad), w, groups=groups)
        return F.conv2d(upfirdn2d(x, f, padding=pad), w, stride=down, groups=groups)
    if up > 1 and down == 1:
        # transposed strided convolution, then the low-pass filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        p0, p1 = p0 - (kw - 1), p1 - (kw - up)
        pt = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, w.flip([2, 3]), stride=up, padding=pt, groups=groups)
        return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up**2)
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    raise ValueError("conv2d_resample supports up-sampling or down-sampling, not both")


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer; ``activation`` is ``linear`` or ``lrelu``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        x = x.matmul((self.weight * self.weight_gain).t())
        return bias_act(x, b, self.activation, dim=x.ndim - 1, inplace=True)


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional 2x FIR up/down-sampling, bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1):
        super().__init__()
        self.activation, self.up, self.down = activation, up, down
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", fir_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv2d_resample(x, self.weight * self.weight_gain, self.resample_filter, self.up, self.down,
                            self.padding)
        return bias_act(x, self.bias, self.activation, gain=ACTIVATION_GAINS[self.activation] * gain,
                        inplace=True)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: the per-sample style scales the input channels of the weight, which is then
    (optionally) demodulated to unit norm per output channel; one grouped convolution for the whole batch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, up: int = 1, down: int = 1):
        super().__init__()
        self.demodulate, self.up, self.down = demodulate, up, down
        self.out_channels, self.kernel_size = out_channels, kernel_size
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", fir_filter())
        self.affine = FullyConnectedLayer(style_dim, in_channels, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channels, height, width = x.shape
        batch, in_channels = int(batch), int(in_channels)  # constants in traced graphs (the grouped weight's shape)
        style = self.affine(style).view(batch, 1, in_channels, 1, 1)
        weight = self.weight * self.weight_gain * style
        if self.demodulate:
            weight = weight * (weight.pow(2).sum(dim=[2, 3, 4]) + 1e-8).rsqrt().view(batch, self.out_channels, 1, 1, 1)
        weight = weight.view(batch * self.out_channels, in_channels, self.kernel_size, self.kernel_size)
        x = conv2d_resample(x.reshape(1, batch * in_channels, height, width), weight, self.resample_filter,
                            self.up, self.down, self.padding, groups=batch)
        return x.view(batch, self.out_channels, *x.shape[2:])


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
