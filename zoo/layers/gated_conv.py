"""Gated convolution (DeepFill v2) and the plain conv + activation layer of DeepFill v1.

A gated layer runs one convolution with twice the output width and returns
``activation(features) * sigmoid(gate)``. Following the official code, a layer with 3 output channels or
no activation is a plain convolution (the RGB heads). Parameters live under ``.conv`` as in the official
ports, so converted state dicts map one to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.export_safe import is_exporting


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) along one axis: the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


# Weight init (chosen; the papers are silent): zero bias and N(0, (gain / sqrt(fan_in))^2) weights, the gain set so
# that a layer keeps the second moment of its input, E[y^2] = E[x^2] (tests/test_layers.py checks each by
# quadrature). With PyTorch's default init (or TF's Glorot, or nipponjo's fan-out Kaiming) a gated layer passes on
# roughly a fifth of its input's scale, so after DeepFill's ~17 layers the output depends on the input by ~1e-9
# and short training runs learn a flat colour first. Converted checkpoints overwrite all of this.
INIT_GAIN = {
    ("elu", True): 2.2402,  # E[ELU(a)^2] E[sigmoid(b)^2] = 1 for a, b ~ N(0, gain^2)
    ("relu", True): 2.3467,  # E[ReLU(a)^2] E[sigmoid(b)^2] = 1
    ("elu", False): 1.2780,  # E[ELU(a)^2] = 1
    ("relu", False): math.sqrt(2.0),  # He et al.
    ("linear", False): 1.0,  # the RGB heads
}


def activation_kind(activation: nn.Module | None) -> str:
    if activation is None:
        return "linear"
    if type(activation) in (nn.ELU, nn.ReLU):
        return type(activation).__name__.lower()
    raise ValueError(f"no init gain for activation {activation!r}")


class GatedConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: nn.Module | None = None,
        gated: bool = True,
        tf_padding: bool = False,
    ):
        super().__init__()
        self.gated = gated and out_channels != 3 and activation is not None
        self.activation = activation
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        conv_out = 2 * out_channels if self.gated else out_channels
        self.conv = nn.Conv2d(in_channels, conv_out, kernel_size, stride, 0, dilation)
        self.reset_parameters()
        self.set_tf_padding(tf_padding)

    def reset_parameters(self) -> None:
        """The variance-preserving init described at ``INIT_GAIN``."""
        fan_in = self.conv.in_channels * self.kernel_size**2
        gain = INIT_GAIN[activation_kind(self.activation), self.gated]
        nn.init.normal_(self.conv.weight, 0.0, gain / math.sqrt(fan_in))
        nn.init.zeros_(self.conv.bias)

    def set_tf_padding(self, enabled: bool) -> None:
        """Symmetric zero padding (default) or TF's SAME padding, asymmetric for stride 2 (converted TF weights).

        A switch rather than a constructor-only choice: loading a checkpoint sets the padding its weights need.
        """
        self.tf_padding = bool(enabled)
        symmetric = self.dilation * (self.kernel_size - 1) // 2
        # With stride 1 (and an odd kernel) SAME padding is symmetric at every size: the convolution pads itself,
        # which saves a padded copy of the input per layer. Only strided layers pad by hand (asymmetrically).
        self.pad_by_hand = self.tf_padding and self.stride != 1
        self.conv.padding = (0, 0) if self.pad_by_hand else (symmetric, symmetric)

    def forward(self, x):
        if self.pad_by_hand:
            top, bottom = tf_same_padding(x.shape[-2], self.kernel_size, self.stride, self.dilation)
            left, right = tf_same_padding(x.shape[-1], self.kernel_size, self.stride, self.dilation)
            x = F.pad(x, (left, right, top, bottom))
        return self.activate(self.conv(x))

    def activate(self, x):
        """The layer's output from its convolution's output (gating and activation)."""
        if self.gated:
            features, gate = x.chunk(2, dim=1)
            if not torch.is_grad_enabled():  # inference: activate in the convolution's output buffer
                return _activate_(self.activation, features) * gate.sigmoid_()
            return self.activation(features) * gate.sigmoid()
        # In place on the convolution's fresh output, also when recording gradients (as daa233's DeepFill v1): the
        # backward pass then takes ELU's slope from its output (y + 1), which is exactly 0 where ELU saturates,
        # instead of exp(x), a subnormal float there that slows every later convolution gradient many times.
        return x if self.activation is None else _activate_(self.activation, x)


def _activate_(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(x)`` written into ``x`` where the activation has an in-place form (ELU, ReLU)."""
    if type(activation) is nn.ELU:
        return F.elu(x, activation.alpha, inplace=True)
    if type(activation) is nn.ReLU:
        return x.relu_()
    return activation(x)


class UpConv2d(nn.Module):
    """Nearest x2 up-sampling followed by a 3x3 convolution (DeepFill's ``*_upsample`` layers).

    Computed from the small input, without the up-sampled image: output row 2i + a of the 3x3 convolution reads
    input rows i - 1, i (a = 0: taps w0 | w1 + w2) or i, i + 1 (a = 1: taps w0 + w1 | w2), columns alike. 4
    instead of 9 multiply-adds per output value, the same sums up to float rounding. Two equal ways to run it,
    each used where it was the faster of the two in a layer benchmark on CPU:

    - training: one stride-2 transposed convolution with the 4x4 kernel [w2, w1 + w2, w0 + w1, w0] per axis;
    - inference: one 2x2 convolution giving the four output phases as channel groups, interleaved afterwards
      (oneDNN's transposed convolution forward is slower than its plain one at these sizes). Not while
      compiling: inductor fused the interleave with the gating into a strided kernel ~4x slower than eager.

    ``phase_conv=False`` (and export, which keeps the plain graph) up-samples and convolves as written.
    """

    def __init__(self, in_channels: int, out_channels: int, align_corners: bool = False, phase_conv: bool = True,
                 **conv_kwargs):
        super().__init__()
        self.align_corners = align_corners
        self.phase_conv = phase_conv
        self.conv = GatedConv2d(in_channels, out_channels, 3, **conv_kwargs)

    def forward(self, x):
        if not self.phase_conv or is_exporting():
            return self.conv(upsample_nearest(x, 2, self.align_corners))
        conv = self.conv.conv  # 3x3, stride 1, padding 1 in both padding modes (TF SAME is symmetric here)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            y = F.conv_transpose2d(x, upsampling_kernel(conv.weight), conv.bias, stride=2, padding=1)
        else:
            y = upsample_by_phases(x, conv.weight, conv.bias)
        return self.conv.activate(y)


def upsampling_kernel(weight: torch.Tensor) -> torch.Tensor:
    """3x3 convolution kernels (O x I x 3 x 3) -> the I x O x 4 x 4 stride-2 transposed-convolution kernels that
    equal them applied to a nearest x2 up-sampled input (see UpConv2d)."""

    def per_axis(k, dim):
        w0, w1, w2 = k.unbind(dim)
        return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)

    return per_axis(per_axis(weight, 2), 3).transpose(0, 1)


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels (O x I x 3 x 3) -> the 2x2 kernels of the four output phases (a, b) of UpConv2d, stacked as
    (a, b, O) x I x 2 x 2: phase 0 of an axis reads input pixels (i - 1, i), phase 1 reads (i, i + 1)."""

    def per_axis(k, dim):
        w0, w1, w2 = k.unbind(dim)
        return torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)

    return torch.cat([phase for rows in per_axis(weight, 2) for phase in per_axis(rows, 3)])


def upsample_by_phases(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3(nearest_x2(x), weight, bias, padding=1) as one 2x2 convolution of x (see phase_kernels)."""
    n, _, h, w = x.shape
    o = weight.shape[0]
    # With padding 1 the 2x2 convolution is (h + 1) x (w + 1): output (p, q) reads rows p - 1, p and columns
    # q - 1, q, so phase (a, b) of pixel (i, j) sits at (i + a, j + b).
    y = F.conv2d(x, phase_kernels(weight), None if bias is None else bias.repeat(4), padding=1)
    phases = [y[:, (2 * a + b) * o : (2 * a + b + 1) * o, a : a + h, b : b + w] for a in (0, 1) for b in (0, 1)]
    return torch.stack(phases, 2).view(n, o, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, o, 2 * h, 2 * w)


def upsample_nearest(x, factor: int, align_corners: bool = False):
    """Nearest resize by ``factor``; ``align_corners=True`` reproduces TF1's ``resize_nearest_neighbor``.

    For ``factor`` 2 both pick source pixel floor(i / 2) at every size (tests/test_deepfill.py checks it), so the
    faster PyTorch kernel serves both."""
    if not align_corners or factor == 2:
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    return resize_nearest_aligned(x, x.shape[-2] * factor, x.shape[-1] * factor)


def resize_nearest_aligned(x, height: int, width: int):
    """TF1 nearest resize with align_corners=True: source index round(i * (in - 1) / (out - 1)).

    TF rounds halves away from zero, so floor(v + 0.5) rather than torch.round (half to even).
    """

    def index(n_in, n_out):
        if n_out == 1:
            return torch.zeros(1, dtype=torch.long, device=x.device)
        scale = (n_in - 1) / (n_out - 1)
        return torch.floor(torch.arange(n_out, device=x.device, dtype=torch.float64) * scale + 0.5).long()

    return x[..., index(x.shape[-2], height), :][..., index(x.shape[-1], width)]


class ConvStack(nn.Module):
    """A named sequence of (gated) convolutions built from a layer table (DeepFill and MHTMA).

    Rows are ``(name, width as a multiple of cnum, kernel, stride or "up", dilation)``; the width is the
    official convolution output count, of which a gated layer keeps half. Layers named in ``relu_layers``
    use ReLU features, the others ELU. ``out_channels`` is the width of the last layer.
    """

    def __init__(self, table, in_channels: int, cnum: int, gated: bool = True, tf_mode: bool = False,
                 relu_layers=()):
        super().__init__()
        self.names = []
        channels = in_channels
        for name, mult, kernel, stride, dilation in table:
            n = int(mult * cnum)
            out = n // 2 if gated else n
            act = nn.ReLU() if name in relu_layers else nn.ELU()
            conv_kwargs = dict(activation=act, gated=gated, tf_padding=tf_mode)
            if stride == "up":
                layer = UpConv2d(channels, out, align_corners=tf_mode, **conv_kwargs)
            else:
                layer = GatedConv2d(channels, out, kernel, stride, dilation, **conv_kwargs)
            self.add_module(name, layer)
            self.names.append(name)
            channels = out
        self.out_channels = channels

    def forward(self, x):
        for name in self.names:
            x = getattr(self, name)(x)
        return x
