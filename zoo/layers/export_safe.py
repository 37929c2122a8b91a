"""Pieces that keep a generator exportable (ONNX, TorchScript) without changing what PyTorch computes.

``is_exporting()`` tells a layer that it is being traced for export, so that it takes its static-graph path
(no data-dependent Python branches, no loops whose length depends on values). ``stable_softmax`` subtracts the
row maximum *before* scaling, so that ``softmax(scale * x)`` never forms ``scale * x`` itself: in fp16 runtimes
(TensorRT) that product is what overflows in DeepFill's contextual attention (open-mmlab/mmdeploy#1831).
"""

from __future__ import annotations

import torch


def is_exporting() -> bool:
    """True while ``torch.export`` / the ONNX exporters / ``torch.jit.trace`` record the model."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())


def stable_softmax(x: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """``softmax(scale * x, dim)`` for ``scale > 0``, computed as ``exp(scale * (x - max x)) / sum``."""
    shifted = (x - x.amax(dim=dim, keepdim=True)) * scale
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def fold_transposed(cols: torch.Tensor, output_size, kernel_size: int, padding: int = 0, stride: int = 1):
    """``F.fold`` written as a grouped transposed convolution with one-hot kernels (the same sums).

    Exporters handle it at any size: the TorchScript-based ONNX exporter cannot translate ``Col2Im`` with a free
    output size, and many runtimes (TensorRT among them) have no Col2Im. Needs ``(size + 2 padding - kernel)``
    divisible by ``stride``, as every fold in the zoo has."""
    n, patch_channels, _ = cols.shape
    k = kernel_size
    channels = int(patch_channels) // (k * k)  # fixed by the architecture: a constant in traced graphs
    height, width = output_size
    blocks_h = (height + 2 * padding - k) // stride + 1
    blocks_w = (width + 2 * padding - k) // stride + 1
    one_hot = torch.eye(k * k, dtype=cols.dtype, device=cols.device).view(k * k, 1, k, k).repeat(channels, 1, 1, 1)
    return torch.nn.functional.conv_transpose2d(cols.reshape(n, patch_channels, blocks_h, blocks_w), one_hot,
                                                stride=stride, padding=padding, groups=channels)
