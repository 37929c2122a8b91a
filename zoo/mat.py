"""MAT: Mask-Aware Transformer for large-hole image inpainting (Li et al., CVPR 2022, arXiv 2203.15270).

Two stages conditioned on a latent ``z`` through a StyleGAN2 mapping network:

1. a mask-aware transformer U-Net: partial-conv encoder down to a 64 x 64 token grid, five Swin-style layers
   (64 -> 32 -> 16 -> 32 -> 64 tokens) of "adjusted" blocks (no LayerNorm; attention on L2-normalised tokens;
   concatenation + FC fusion instead of residuals) whose multi-head contextual attention only attends to valid
   tokens and marks a whole window valid once any of its tokens is; a style-modulated conv decoder to full size;
2. a conv U-Net whose decoder is a StyleGAN2 synthesis network with per-layer noise.

At both bottlenecks a random half of the features is replaced by a map derived from the latent (the official
code's always-on dropout). The module and buffer names are the official ones (``networks/mat.py`` of
fenglinglwb/MAT), so released state dicts load one to one; ``convert_checkpoint`` also reads the released
StyleGAN2-ADA pickles without the official code.

Conventions. Outside: the zoo's (holes zeroed, mask 1 = hole, stages in [-1, 1]). Inside: MAT's own
(``known`` = 1 - mask, fed centred as ``known - 0.5``). The official network composites its outputs; ours
returns raw predictions (compositing happens outside generators) and feeds stage 2 the stage-1 composite as
the official code does. The outputs are linear: training losses see them unclamped, as in the official
training; in eval mode they are clamped to [-1, 1] (``clamp=``).

Randomness (all in ``forward`` keyword arguments): ``z`` (drawn when not given), ``noise_mode``:
``'random'`` draws the per-layer noise and the two bottleneck keep-maps afresh (the default in training);
``'const'`` uses the ``noise_const`` buffers and fixed keep-maps drawn once from a fixed seed, so that the
output depends only on ``z`` (the default in eval mode; the official code keeps its dropout random even in
eval mode); ``'none'`` is ``'const'`` without per-layer noise. ``seed`` makes ``z`` and all random draws come
from a private generator; ``keep_maps`` passes both keep-maps explicitly (to reproduce an official run):
(stage 1: N x dim x 16 x 16 in feature layout, stage 2: N x 512 x 16 x 16 at the build size; 0/1 values).

Sizes: any H, W that are multiples of the build ``resolution``; larger inputs tile the constant noise (the
official ``'const'`` mode fails there). Tiny test models set ``resolution=64, token_resolution=16`` and small
widths: the same structure with a 16 x 16 token grid and a 4 x 4 bottleneck.
"""

from __future__ import annotations

import functools
import io
import math
import pickle
import zipfile
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.contract import InpaintOutput, check_inputs
from zoo.errors import CheckpointError, InputSizeError
from zoo.layers.stylegan2 import (
    Conv2dLayer,
    FullyConnectedLayer,
    ModulatedConv2d,
    bias_act,
    fir_filter,
    normalize_2nd_moment,
    upsample2d,
)
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model
from zoo.weights_table import CC_BY_NC, URLFile, WeightEntry, weight_table

NOISE_MODES = ("random", "const", "none")
# Seeds of the fixed keep-maps of noise_mode 'const' / 'none' (stage 1, stage 2); any fixed value would do.
CONST_KEEP_SEEDS = (1729, 2718)


def channels_at(res: int, channel_base: int = 32768, channel_max: int = 512) -> int:
    """StyleGAN2's width rule; with the defaults MAT's table {512: 64, 256: 128, 128: 256, <= 64: 512}."""
    return min(channel_base // res, channel_max)


# ---------------------------------------------------------------------------------------------------------
# StyleGAN2 synthesis layers (generator only)


class StyleConv(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up), optional per-pixel noise, bias, lrelu."""

    def __init__(self, in_channels, out_channels, style_dim, resolution, kernel_size=3, up=1, use_noise=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=True, up=up)
        self.use_noise = use_noise
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x, style, noise_mode="random", generator=None):
        x = self.conv(x, style)
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype, generator=generator)
            x = x.add_(noise * self.noise_strength)  # x: this layer's own convolution output
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const
            if noise.shape != x.shape[2:]:  # an input larger than the build size: tile the constant noise
                noise = noise.repeat(x.shape[2] // noise.shape[0], x.shape[3] // noise.shape[1])
            x = x.add_(noise * self.noise_strength)
        return bias_act(x, self.bias, "lrelu", inplace=True)


class ToRGB(nn.Module):
    """1x1 modulated convolution without demodulation; adds the FIR-up-sampled RGB of the previous block."""

    def __init__(self, in_channels, out_channels, style_dim):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_filter())

    def forward(self, x, style, skip=None):
        out = bias_act(self.conv(x, style), self.bias, inplace=True)
        if skip is not None:
            if skip.shape != out.shape:
                skip = upsample2d(skip, self.resample_filter)
            out = out.add_(skip)
        return out


class MappingNet(nn.Module):
    """z -> w: 2nd-moment normalisation, 8 lrelu FC layers at lr multiplier 0.01, broadcast to ``num_ws``; tracks
    the mean w (``w_avg``) in training for truncation."""

    def __init__(self, z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            self.add_module(f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, truncation_psi=1.0, update_w_avg=True):
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


# ---------------------------------------------------------------------------------------------------------
# Stage 1: the mask-aware transformer


class Conv2dLayerPartial(nn.Module):
    """MAT's partial convolution. Unlike Liu et al.'s, the input is not masked before the convolution and the
    bias and activation come before the re-weighting by (window size / valid count); kept as in the official
    code. A pixel becomes valid when any pixel of its window was (mask 1 = known)."""

    def __init__(self, in_channels, out_channels, kernel_size, activation="linear", up=1, down=1):
        super().__init__()
        self.conv = Conv2dLayer(in_channels, out_channels, kernel_size, activation=activation, up=up, down=down)
        self.kernel_size, self.stride = kernel_size, down

    def forward(self, x, mask=None):
        x = self.conv(x)
        if mask is None:
            return x, None
        with torch.no_grad():
            ones = mask.new_ones(1, 1, self.kernel_size, self.kernel_size)
            count = F.conv2d(mask, ones, stride=self.stride, padding=self.kernel_size // 2)
            ratio = self.kernel_size**2 / (count + 1e-8)
            mask = count.clamp(0, 1)
            ratio = ratio * mask
        return x.mul_(ratio), mask  # x: this layer's own output


def to_tokens(x):  # (B, C, H, W) -> (B, H*W, C), row-major token order
    return x.flatten(2).transpose(1, 2)


def to_feature(x, size):  # (B, H*W, C) -> (B, C, H, W)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


def window_partition(x, window):  # (B, H, W, C) -> (B * windows, window, window, C)
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows, window, h, w):  # inverse of window_partition
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_bias(size, window, shift) -> torch.Tensor:
    """Swin's additive bias for shifted windows: -100 between tokens that came from different regions."""
    h, w = size
    regions = torch.zeros(1, h, w, 1)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in spans:
        for ws in spans:
            regions[:, hs, ws, :] = label
            label += 1
    regions = window_partition(regions, window).view(-1, window * window)
    diff = regions.unsqueeze(1) - regions.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head contextual attention within windows of N tokens.

    Queries and keys come from L2-normalised tokens, values from the raw ones. Invalid keys (mask 0) get -100
    added to their score; afterwards every token of a window becomes valid if at least one token of the window
    was (the dynamic mask update). A window without valid tokens gets -100 on every key, which leaves its softmax
    unchanged, and stays invalid.
    """

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = FullyConnectedLayer(dim, dim)
        self.k = FullyConnectedLayer(dim, dim)
        self.v = FullyConnectedLayer(dim, dim)
        self.proj = FullyConnectedLayer(dim, dim)

    def forward(self, x, valid=None, shift_bias=None, return_attention=False):
        """x: (B * windows, N, C); valid: (B * windows, N, 1) in {0, 1} or None; shift_bias: (windows, N, N).

        The scores are a plain softmax attention with an additive bias (shift regions, invalid keys), so they run
        as one fused ``scaled_dot_product_attention`` (same scale, ``head_dim ** -0.5``); ``return_attention``
        takes the explicit path that materialises the maps."""
        bw, n, c = x.shape
        heads = self.num_heads
        xn = F.normalize(x, p=2.0, dim=-1)
        q = self.q(xn).reshape(bw, n, heads, c // heads).transpose(1, 2)
        k = self.k(xn).reshape(bw, n, heads, c // heads).transpose(1, 2)
        v = self.v(x).reshape(bw, n, heads, c // heads).transpose(1, 2)
        bias = None
        if shift_bias is not None:
            windows = shift_bias.shape[0]
            bias = shift_bias.to(x.dtype)[None, :, None].expand(bw // windows, -1, -1, -1, -1).reshape(bw, 1, n, n)
        if valid is not None:
            key_bias = torch.where(valid.squeeze(-1)[:, None, None, :] == 0, -100.0, 0.0).to(x.dtype)
            bias = key_bias if bias is None else bias + key_bias
            with torch.no_grad():
                valid = valid.sum(dim=1, keepdim=True).clamp(0, 1).expand(-1, n, -1)
        if return_attention:
            scores = q @ k.transpose(-2, -1) * self.scale
            attn = (scores if bias is None else scores + bias).softmax(dim=-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = self.proj(out.transpose(1, 2).reshape(bw, n, c))
        return (out, valid, attn) if return_attention else (out, valid)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = FullyConnectedLayer(dim, hidden, activation="lrelu")
        self.fc2 = FullyConnectedLayer(hidden, dim)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class SwinTransformerBlock(nn.Module):
    """MAT's adjusted transformer block: (shifted-)window attention, ``fuse(cat(input, attention))`` with an
    lrelu FC instead of a residual, then an MLP; no LayerNorm and no residual around the MLP."""

    def __init__(self, dim, input_resolution, num_heads, window_size, shift_size=0, mlp_ratio=2.0):
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        if min(self.input_resolution) <= window_size:  # the map fits in one window: no partition, no shift
            self.shift_size, self.window_size = 0, min(self.input_resolution)
        self.attn = WindowAttention(dim, num_heads)
        self.fuse = FullyConnectedLayer(dim * 2, dim, activation="lrelu")
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        bias = (shifted_window_bias(self.input_resolution, self.window_size, self.shift_size)
                if self.shift_size > 0 else None)
        self.register_buffer("attn_mask", bias)  # persistent, as in the official state dict

    def forward(self, x, size, mask=None):
        h, w = size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = x.view(b, h, w, c)
        if mask is not None:
            mask = mask.view(b, h, w, 1)
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            if mask is not None:
                mask = torch.roll(mask, shifts=(-shift, -shift), dims=(1, 2))
        x_windows = window_partition(x, ws).view(-1, ws * ws, c)
        mask_windows = window_partition(mask, ws).view(-1, ws * ws, 1) if mask is not None else None
        shift_bias = None
        if shift:
            shift_bias = (self.attn_mask if tuple(size) == self.input_resolution
                          else shifted_window_bias(size, ws, shift).to(x.device))
        x, mask_windows = self.attn(x_windows, mask_windows, shift_bias)
        x = window_reverse(x.view(-1, ws, ws, c), ws, h, w)
        if mask is not None:
            mask = window_reverse(mask_windows.reshape(-1, ws, ws, 1), ws, h, w)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
            if mask is not None:
                mask = torch.roll(mask, shifts=(shift, shift), dims=(1, 2))
        x = self.fuse(torch.cat([shortcut, x.reshape(b, h * w, c)], dim=-1))
        x = self.mlp(x)
        return x, (mask.reshape(b, h * w, 1) if mask is not None else None)


class PatchResample(nn.Module):
    """PatchMerging / PatchUpsampling: a 3x3 partial convolution with 2x down / up on the token map."""

    def __init__(self, dim, down=1, up=1):
        super().__init__()
        self.conv = Conv2dLayerPartial(dim, dim, 3, activation="lrelu", down=down, up=up)
        self.factor = up / down

    def forward(self, x, size, mask=None):
        x, mask = self.conv(to_feature(x, size), to_feature(mask, size) if mask is not None else None)
        size = (int(size[0] * self.factor), int(size[1] * self.factor))
        return to_tokens(x), size, (to_tokens(mask) if mask is not None else None)


class BasicLayer(nn.Module):
    """Optional token down/up-sampling, ``depth`` blocks (odd ones shifted), a 3x3 partial conv on the token map,
    plus the layer's only residual connection (from after the resampling).

    ``grad_checkpointing``: a training-mode forward pass that records gradients keeps only each block's input and
    recomputes the block (attention maps, MLP) during the backward pass; same gradients; eval mode never does."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, downsample=None):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = downsample
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size,
                                 shift_size=0 if i % 2 == 0 else window_size // 2)
            for i in range(depth)
        )
        self.conv = Conv2dLayerPartial(dim, dim, 3, activation="lrelu")

    def forward(self, x, size, mask=None):
        if self.downsample is not None:
            x, size, mask = self.downsample(x, size, mask)
        identity = x
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, mask = checkpoint(block, x, size, mask, use_reentrant=False)
            else:
                x, mask = block(x, size, mask)
        x, mask = self.conv(to_feature(x, size), to_feature(mask, size) if mask is not None else None)
        return to_tokens(x) + identity, size, (to_tokens(mask) if mask is not None else None)


class DecStyleBlock(nn.Module):
    """Stage-1 decoder block: StyleConv 2x up, + encoder skip, StyleConv, ToRGB (no noise)."""

    def __init__(self, res, in_channels, out_channels, style_dim, img_channels=3):
        super().__init__()
        self.conv0 = StyleConv(in_channels, out_channels, style_dim, res, up=2, use_noise=False)
        self.conv1 = StyleConv(out_channels, out_channels, style_dim, res, use_noise=False)
        self.toRGB = ToRGB(out_channels, img_channels, style_dim)

    def forward(self, x, img, style, skip):
        x = self.conv0(x, style).add_(skip)
        x = self.conv1(x, style)
        return x, self.toRGB(x, style, skip=img)


class FirstStage(nn.Module):
    """The transformer U-Net. ``token_resolution`` is the token grid at the build resolution (64 in MAT); the
    bottleneck is a quarter of it (16)."""

    DEPTHS, RATIOS, WINDOWS = (2, 3, 4, 3, 2), (1, 1 / 2, 1 / 2, 2, 2), (8, 16, 16, 16, 8)

    def __init__(self, img_channels=3, img_resolution=512, dim=180, w_dim=512, num_heads=6, token_resolution=64):
        super().__init__()
        self.conv_first = Conv2dLayerPartial(img_channels + 1, dim, 3, activation="lrelu")
        down_time = int(math.log2(img_resolution // token_resolution))
        self.enc_conv = nn.ModuleList(
            Conv2dLayerPartial(dim, dim, 3, down=2, activation="lrelu") for _ in range(down_time)
        )
        # (the official code also computes drop-path rates, linspace(0, 0.1), but never applies them)
        self.tran = nn.ModuleList()
        res = token_resolution
        for depth, ratio, window in zip(self.DEPTHS, self.RATIOS, self.WINDOWS):
            res = int(res * ratio)
            resample = (PatchResample(dim, down=2) if ratio < 1 else PatchResample(dim, up=2) if ratio > 1
                        else None)
            self.tran.append(BasicLayer(dim, (res, res), depth, num_heads, window, downsample=resample))
        bottleneck = token_resolution // 4
        # global style from the bottleneck: 3x3 down-sampling convs to 1 x 1, then average pooling
        self.down_conv = nn.Sequential(
            *[Conv2dLayer(dim, dim, 3, down=2, activation="lrelu") for _ in range(int(math.log2(bottleneck)))],
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self.to_style = FullyConnectedLayer(dim, dim * 2, activation="lrelu")
        self.ws_style = FullyConnectedLayer(w_dim, dim, activation="lrelu")
        self.to_square = FullyConnectedLayer(dim, bottleneck * bottleneck, activation="lrelu")
        self.dec_conv = nn.ModuleList()
        res = token_resolution
        for _ in range(down_time):
            res *= 2
            self.dec_conv.append(DecStyleBlock(res, dim, dim, dim * 3, img_channels))

    def forward(self, image, known, ws, keep):
        """image: holes zeroed; known: 1 = valid; ws: (N, num_ws, w_dim); keep(shape) -> bottleneck keep-map."""
        x, mask = self.conv_first(torch.cat([known - 0.5, image * known], dim=1), known)
        skips = [x]
        for i, block in enumerate(self.enc_conv):
            x, mask = block(x, mask)
            if i != len(self.enc_conv) - 1:
                skips.append(x)
        size = tuple(x.shape[-2:])
        x, mask = to_tokens(x), to_tokens(mask)
        mid = len(self.tran) // 2
        for i, layer in enumerate(self.tran):
            if i < mid:  # mask-aware attention only in the first two layers
                x, size, mask = layer(x, size, mask)
                skips.append(x)
            elif i > mid:
                x, size, _ = layer(x, size, None)
                x = x + skips[mid - i]
            else:
                x, size, _ = layer(x, size, None)
                # replace a random half of the bottleneck features by a map made from the latent
                w_style = self.ws_style(ws[:, -1])
                square = self.to_square(w_style).unsqueeze(1)  # (N, 1, bottleneck^2)
                square = F.interpolate(square, size=x.shape[1], mode="linear", align_corners=False)
                feature = to_feature(x, size)
                k = keep(feature.shape)
                feature = feature * k + square.view(-1, 1, *size) * (1 - k)
                x = to_tokens(feature)
                global_style = self.to_style(self.down_conv(feature).flatten(start_dim=1))
                style = torch.cat([global_style, w_style], dim=1)
        x = to_feature(x, size)
        img = None
        for i, block in enumerate(self.dec_conv):
            x, img = block(x, img, style, skips[len(self.dec_conv) - i - 1])
        return img


# ---------------------------------------------------------------------------------------------------------
# Stage 2: conv U-Net with a StyleGAN2 decoder


class EncFromRGB(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, out_channels, 1, activation="lrelu")
        self.conv1 = Conv2dLayer(out_channels, out_channels, 3, activation="lrelu")

    def forward(self, x):
        return self.conv1(self.conv0(x))


class ConvBlockDown(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.conv1 = Conv2dLayer(out_channels, out_channels, 3, activation="lrelu")

    def forward(self, x):
        return self.conv1(self.conv0(x))


class Encoder(nn.Module):
    """From the input resolution down to 16 x 16; returns every level's features by log2 resolution."""

    def __init__(self, res_log2, in_channels, nf):
        super().__init__()
        self.levels = list(range(res_log2, 3, -1))
        for i in self.levels:
            block = EncFromRGB(in_channels, nf(2**i)) if i == res_log2 else ConvBlockDown(nf(2 ** (i + 1)), nf(2**i))
            setattr(self, f"EncConv_Block_{2**i}x{2**i}", block)

    def forward(self, x):
        out = {}
        for i in self.levels:
            x = getattr(self, f"EncConv_Block_{2**i}x{2**i}")(x)
            out[i] = x
        return out


class ToStyle(nn.Module):
    """Global style code: three 2x down-sampling convs from 16 x 16, average pooling, FC."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Sequential(*[Conv2dLayer(in_channels, in_channels, 3, activation="lrelu", down=2)
                                    for _ in range(3)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = FullyConnectedLayer(in_channels, out_channels, activation="lrelu")

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(start_dim=1))


class DecBlockFirstV2(nn.Module):
    """The 16 x 16 decoder block: plain conv, + encoder features, StyleConv (w[0]), ToRGB (w[1])."""

    def __init__(self, res_log2, in_channels, out_channels, style_dim, use_noise, img_channels=3):
        super().__init__()
        self.res = res_log2
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = StyleConv(in_channels, out_channels, style_dim, 2**res_log2, use_noise=use_noise)
        self.toRGB = ToRGB(out_channels, img_channels, style_dim)

    def forward(self, x, ws, gs, features, noise_mode, generator):
        x = self.conv0(x).add_(features[self.res])
        x = self.conv1(x, torch.cat([ws[:, 0], gs], dim=1), noise_mode, generator)
        return x, self.toRGB(x, torch.cat([ws[:, 1], gs], dim=1))


class DecBlock(nn.Module):
    """StyleConv 2x up, + encoder features, StyleConv, ToRGB; styles w[2r-9], w[2r-8], w[2r-7] for 2^r pixels."""

    def __init__(self, res_log2, in_channels, out_channels, style_dim, use_noise, img_channels=3):
        super().__init__()
        self.res = res_log2
        res = 2**res_log2
        self.conv0 = StyleConv(in_channels, out_channels, style_dim, res, up=2, use_noise=use_noise)
        self.conv1 = StyleConv(out_channels, out_channels, style_dim, res, use_noise=use_noise)
        self.toRGB = ToRGB(out_channels, img_channels, style_dim)

    def forward(self, x, img, ws, gs, features, noise_mode, generator):
        r = self.res
        x = self.conv0(x, torch.cat([ws[:, 2 * r - 9], gs], dim=1), noise_mode, generator)
        x = x.add_(features[r])
        x = self.conv1(x, torch.cat([ws[:, 2 * r - 8], gs], dim=1), noise_mode, generator)
        return x, self.toRGB(x, torch.cat([ws[:, 2 * r - 7], gs], dim=1), skip=img)


class Decoder(nn.Module):
    def __init__(self, res_log2, style_dim, use_noise, nf, img_channels=3):
        super().__init__()
        self.res_log2 = res_log2
        self.Dec_16x16 = DecBlockFirstV2(4, nf(16), nf(16), style_dim, use_noise, img_channels)
        for r in range(5, res_log2 + 1):
            setattr(self, f"Dec_{2**r}x{2**r}",
                    DecBlock(r, nf(2 ** (r - 1)), nf(2**r), style_dim, use_noise, img_channels))

    def forward(self, x, ws, gs, features, noise_mode, generator):
        x, img = self.Dec_16x16(x, ws, gs, features, noise_mode, generator)
        for r in range(5, self.res_log2 + 1):
            x, img = getattr(self, f"Dec_{2**r}x{2**r}")(x, img, ws, gs, features, noise_mode, generator)
        return img


class SynthesisNet(nn.Module):
    def __init__(self, w_dim=512, img_resolution=512, img_channels=3, channel_base=32768, channel_max=512,
                 dim=180, num_heads=6, token_resolution=64, use_noise=True):
        super().__init__()
        res_log2 = int(math.log2(img_resolution))
        self.num_layers = res_log2 * 2 - 6  # the number of w vectors the decoder reads

        def nf(res):
            return channels_at(res, channel_base, channel_max)

        self.first_stage = FirstStage(img_channels, img_resolution, dim, w_dim, num_heads, token_resolution)
        self.enc = Encoder(res_log2, img_channels * 2 + 1, nf)
        self.to_square = FullyConnectedLayer(w_dim, 16 * 16, activation="lrelu")
        self.to_style = ToStyle(nf(16), nf(4) * 2)
        self.dec = Decoder(res_log2, w_dim + nf(4) * 2, use_noise, nf, img_channels)

    def forward(self, image, known, ws, keep, noise_mode, generator):
        """Returns the raw (uncomposited) stage-1 and stage-2 images."""
        stage1 = self.first_stage(image, known, ws, lambda shape: keep(0, shape))
        composite1 = image * known + stage1 * (1 - known)
        features = self.enc(torch.cat([known - 0.5, composite1, image * known], dim=1))
        fea_16 = features[4]
        square = self.to_square(ws[:, 0]).view(-1, 1, 16, 16)
        square = F.interpolate(square, size=fea_16.shape[-2:], mode="bilinear", align_corners=False)
        k = keep(1, fea_16.shape)
        fea_16 = fea_16 * k + square * (1 - k)
        features[4] = fea_16
        gs = self.to_style(fea_16)
        return stage1, self.dec(fea_16, ws, gs, features, noise_mode, generator)


def const_keep_map(stage: int, shape) -> torch.Tensor:
    """The fixed keep-map of noise modes 'const' / 'none': drawn once from a fixed seed, shared by the batch."""
    fixed = torch.Generator().manual_seed(CONST_KEEP_SEEDS[stage])
    return (torch.rand((1, *shape[1:]), generator=fixed) < 0.5).float()


class MAT(nn.Module):
    """MAT generator: ``G(image * (1 - mask), mask, z=None, noise_mode=None, ...) -> InpaintOutput``.

    ``resolution`` is the build resolution (512 or 256 in the released models); inputs must be multiples of it.
    Stages: (stage-1 image, final image). Training mode draws z, noise and keep-maps at random and applies
    truncation ``train_truncation_psi`` and style mixing with probability ``style_mixing_prob`` (MAT's training
    recipe: 0.5 and 0.5); eval mode uses truncation 1 and no mixing. ``grad_checkpointing`` recomputes the
    transformer blocks in the backward pass instead of keeping their activations (see ``BasicLayer``).
    """

    def __init__(self, resolution=512, dim=180, num_heads=6, token_resolution=64, z_dim=512, w_dim=512,
                 channel_base=32768, channel_max=512, mapping_layers=8, use_noise=True,
                 train_truncation_psi=0.5, style_mixing_prob=0.5, grad_checkpointing=False):
        super().__init__()
        res_log2 = int(math.log2(resolution))
        if 2**res_log2 != resolution or resolution < 32:
            raise ValueError(f"resolution must be a power of two >= 32, got {resolution}")
        if resolution < token_resolution or token_resolution < 16 or dim % num_heads:
            raise ValueError("need token_resolution in [16, resolution] and dim divisible by num_heads")
        self.resolution = resolution
        self.z_dim = z_dim
        self.train_truncation_psi, self.style_mixing_prob = train_truncation_psi, style_mixing_prob
        self.synthesis = SynthesisNet(w_dim, resolution, 3, channel_base, channel_max, dim, num_heads,
                                      token_resolution, use_noise)
        self.mapping = MappingNet(z_dim, w_dim, self.synthesis.num_layers, num_layers=mapping_layers)
        for layer in self.synthesis.first_stage.tran:  # activation checkpointing of the transformer blocks
            layer.grad_checkpointing = grad_checkpointing

    def keep_map_shapes(self, height: int, width: int):
        """Shapes (1 x C x h x w) of the two keep-maps for an input of ``height`` x ``width``."""
        first = self.synthesis.first_stage
        per_token = 2 ** len(first.enc_conv) * 4  # input pixels per bottleneck token side (two 2x merges)
        per_cell = self.resolution // 16  # stage 2's bottleneck is 16 x 16 at the build resolution
        dim, channels = first.conv_first.conv.weight.shape[0], self.synthesis.to_style.conv[0].weight.shape[0]
        return ((1, dim, height // per_token, width // per_token), (1, channels, height // per_cell, width // per_cell))

    def forward(self, masked_image, mask, z=None, noise_mode=None, truncation_psi=None, seed=None,
                keep_maps=None, clamp=None) -> InpaintOutput:
        check_inputs(masked_image, mask, multiple=self.resolution)
        noise_mode = noise_mode or ("random" if self.training else "const")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        n, device = masked_image.shape[0], masked_image.device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        if z is None:
            z = torch.randn(n, self.z_dim, device=device, generator=generator)
        elif z.shape != (n, self.z_dim):
            raise InputSizeError(f"z must be {n} x {self.z_dim}, got {tuple(z.shape)}")
        if truncation_psi is None:
            truncation_psi = self.train_truncation_psi if self.training else 1.0

        ws = self.mapping(z, truncation_psi)
        if self.training and self.style_mixing_prob > 0:
            # as the official training loop: decided on the device (no host sync), the second latent always drawn
            cutoff = torch.randint(1, ws.shape[1], (), device=device, generator=generator)
            mix = torch.rand((), device=device, generator=generator) < self.style_mixing_prob
            other = self.mapping(torch.randn(z.shape, device=device, generator=generator), truncation_psi,
                                 update_w_avg=False)
            later = torch.arange(ws.shape[1], device=device).view(1, -1, 1) >= cutoff
            ws = torch.where(later & mix, other, ws)

        def keep(stage, shape):
            if keep_maps is not None:
                return keep_maps[stage].to(device, masked_image.dtype)
            if noise_mode == "random":
                return (torch.rand(shape, device=device, generator=generator) < 0.5).to(masked_image.dtype)
            return const_keep_map(stage, shape).to(device, masked_image.dtype)

        known = 1 - mask
        image = masked_image * known  # holes are zero whatever the caller passed
        stage1, final = self.synthesis(image, known, ws, keep, noise_mode, generator)
        if clamp is None:  # training losses see the linear output, as in the official training
            clamp = not self.training
        if clamp:
            stage1, final = stage1.clamp(-1, 1), final.clamp(-1, 1)
        return InpaintOutput(stages=(stage1, final))


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints


class _Opaque:
    """Stands in for a pickled class the loader accepts without importing it: keeps the pickled state only."""

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _OpaqueDict(dict):
    """Stands in for ``dnnlib.EasyDict`` (a dict subclass)."""

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _Persistent(_Opaque):
    """A ``torch_utils.persistence`` object (an official network module): its class name and state."""


def _reconstruct_persistent_obj(meta):
    obj = _Persistent()
    obj.class_name, obj.state = meta.get("class_name"), meta.get("state")
    return obj


def _load_storage_bytes(data):  # replaces torch.storage._load_from_bytes, which unpickles without restriction
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data, *args):  # parameters become plain tensors
    return data


@functools.lru_cache(maxsize=1)
def _safe_globals() -> dict:
    import copyreg

    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    safe = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("builtins", "object"): object,
        ("builtins", "set"): set,
        ("dnnlib.util", "EasyDict"): _OpaqueDict,
        ("torch", "Size"): torch.Size,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        safe[(module, "scalar")] = multiarray.scalar
        safe[(module, "_reconstruct")] = multiarray._reconstruct
    safe[("numpy", "dtype")] = np.dtype
    safe[("numpy", "ndarray")] = np.ndarray
    return safe


class _RestrictedUnpickler(pickle.Unpickler):
    """Reads StyleGAN2-ADA network pickles without their code: official modules (persistent classes and torch
    containers) become opaque containers of their pickled state; tensors come from torch's weights-only loader.
    Any other global is refused."""

    OPAQUE_PACKAGES = ("torch_utils", "dnnlib", "networks", "training", "losses", "torch.nn.modules")

    def find_class(self, module, name):
        safe = _safe_globals()
        if (module, name) in safe:
            return safe[(module, name)]
        if module.startswith(self.OPAQUE_PACKAGES):
            return _Opaque
        raise CheckpointError(f"the pickle refers to {module}.{name}, which the MAT loader does not accept")


def _module_state(obj, prefix="") -> dict:
    """Flatten an unpickled module tree (its ``_parameters``, ``_buffers``, ``_modules``) into a state dict."""
    state = obj.state if isinstance(obj, _Persistent) else obj.__dict__.get("state", obj.__dict__)
    if not isinstance(state, dict):
        return {}
    out = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for key, value in (state.get(group) or {}).items():
            if value is not None and key not in skip:
                out[prefix + key] = value
    for key, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_state(child, f"{prefix}{key}."))
    return out


def read_network_pickle(path) -> dict:
    """The named networks (``G``, ``D``, ``G_ema`` ...) of a StyleGAN2-ADA pickle as flat state dicts."""
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable MAT network pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a StyleGAN2-ADA snapshot dict")
    return {k: _module_state(v) for k, v in data.items() if isinstance(v, _Opaque)}


def convert_checkpoint(obj, path, model: MAT) -> dict:
    """Official MAT weights -> state dict of ``model``: a released ``.pkl`` (``G_ema``), or a G-only ``.pth``
    state dict with or without the stage-2 noise entries (IOPaint's conversion lacks them; zero noise strength
    then reproduces that model)."""
    if obj is None:
        if zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is a torch file that cannot be read with weights_only=True")
        networks = read_network_pickle(path)
        if "G_ema" not in networks:
            raise CheckpointError(f"{path} has no G_ema network (found: {', '.join(networks) or 'none'})")
        obj = networks["G_ema"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path} is neither a MAT network pickle nor a state dict of tensors")
    state = dict(obj)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing and all(k.endswith(("noise_strength", "noise_const")) for k in missing):
        for k in missing:  # a model built without per-layer noise
            state[k] = torch.zeros_like(expected[k]) if k.endswith("noise_strength") else expected[k].clone()
    return state  # the caller checks keys and shapes and names the first offending ones


def convert_discriminator(obj, path, D: nn.Module) -> dict | None:
    """The released discriminator of a StyleGAN2-ADA snapshot (``D``; its names are ours), or None."""
    if isinstance(obj, dict) and isinstance(obj.get("D"), dict):
        return dict(obj["D"])
    if obj is None and path is not None and not zipfile.is_zipfile(path):
        return read_network_pickle(path).get("D")
    return None


# ---------------------------------------------------------------------------------------------------------
# Export (zoo/export.py), with the TorchScript-based ONNX exporter (the dynamo one takes minutes and its file
# gave NaNs in onnxruntime here). The randomness becomes inputs: ``z`` and the two bottleneck keep-maps (the ONNX file
# stores the eval-mode maps as their defaults); per-layer noise is the constant buffers ('const', the eval
# default). One fixed size: the windows, shifted-window biases and constant noise are built for it; batch 1,
# since the modulated convolutions group by sample.


def _export_inputs(model, batch, height, width):
    keeps = [const_keep_map(i, shape) for i, shape in enumerate(model.keep_map_shapes(height, width))]
    return {"z": (torch.randn(batch, model.z_dim), "normal"),
            "keep_stage1": (keeps[0], "stored"), "keep_stage2": (keeps[1], "stored")}


def _export_call(model, masked_image, mask, z, keep_stage1, keep_stage2):
    return model(masked_image, mask, z=z, keep_maps=(keep_stage1, keep_stage2), noise_mode="const")


EXPORT = dict(exporter="torchscript", dynamic=False, dynamic_batch=False, inputs=_export_inputs, call=_export_call,
              fixed_reason="MAT's windows, shifted-window masks and constant noise are built for one size",
              weights_license="CC BY-NC 4.0 (fenglinglwb/MAT, research only)")


# ---------------------------------------------------------------------------------------------------------
# Presets

PAPER = "Li et al., MAT: Mask-Aware Transformer for Large Hole Image Inpainting, CVPR 2022 (arXiv 2203.15270)"

# StyleGAN2 lazy regularisation: with R1 every 16 D steps (and the official G regularisation interval 4, even
# though path-length regularisation is off), Adam's lr and betas are rescaled by interval / (interval + 1).
G_RATIO, D_RATIO = 4 / 5, 16 / 17


RECIPE = Recipe(
    discriminator="stylegan",
    discriminator_kwargs=dict(mbstd_group_size=4),
    losses=(
        # VGG19 on the composited final image (conv4_4 x 1/4, conv5_4 x 1/2, L1), times pcp_ratio 0.1;
        # the stage-1 output gets no perceptual term, only its discriminator head.
        LossTerm("perceptual", 0.1, stage=-1, on="composite",
                 kwargs=dict(network="vgg19", layers=("conv4_4", "conv5_4"), layer_weights=(0.25, 0.5),
                             normalize="imagenet")),
    ),
    adversarial=AdversarialSpec(loss="nonsaturating", weight=1.0, fake="composite", stages=(-1, 0),
                                r1_gamma=10.0, r1_interval=16),
    optim_g=OptimSpec(lr=1e-3 * G_RATIO, betas=(0.0, 0.99**G_RATIO), eps=1e-8),
    optim_d=OptimSpec(lr=1e-3 * D_RATIO, betas=(0.0, 0.99**D_RATIO), eps=1e-8),
    batch_size=32,
    # MAT's RandomMask with hole_range [0, 1]: its box and stroke counts follow the canvas (256 or 512).
    masks="mat_large",
    ema_kimg=10.0,
)


TINY = dict(resolution=64, token_resolution=16, dim=24, z_dim=32, w_dim=32, channel_max=32)

# Released weights (fenglinglwb/MAT README: a OneDrive folder, no per-file links or hashes; IOPaint mirrors the
# G of the 8M-image Places model on GitHub with its md5).
MAT_ONEDRIVE = ("https://mycuhk-my.sharepoint.com/:f:/g/personal/1155137927_link_cuhk_edu_hk/"
                "EuY30ziF-G5BvwziuHNFzDkBVC6KBPRg69kCeHIu-BXORA?e=7OwJyE")
_SNAPSHOT = dict(contents=("G", "G_ema", "D"), format="mat_pickle", reader=read_network_pickle, license=CC_BY_NC,
                 origin=f"https://github.com/fenglinglwb/MAT (README, One Drive: {MAT_ONEDRIVE})", paper=PAPER)
MAT_WEIGHTS = weight_table(
    WeightEntry("places512", "Places_512_FullData_G.pth",
                sources=(URLFile("https://github.com/Sanster/models/releases/download/add_mat/"
                                 "Places_512_FullData_G.pth"),),
                hash="8ca927835fa3f5e21d65ffcb165377ed", hash_kind="md5", license=CC_BY_NC,
                data="Places365-Challenge, all 8M images", resolution=512, contents=("G_ema",), format="mat_g_pth",
                origin="https://github.com/Sanster/IOPaint (iopaint/model/mat.py: MAT_MODEL_URL, MAT_MODEL_MD5)",
                paper=PAPER, notes="G_ema of Places_512_FullData.pkl as a plain state dict (IOPaint's conversion, "
                "without the per-layer noise entries: zero noise strength reproduces it)"),
    WeightEntry("places512_full_pkl", "Places_512_FullData.pkl", data="Places365-Challenge, all 8M images",
                resolution=512, notes="the full training snapshot (G, G_ema, D): manual download", **_SNAPSHOT),
    WeightEntry("places512_pkl", "Places_512.pkl", data="Places365-Standard, 1.8M images", resolution=512,
                notes="manual download; the file name is not confirmed by the README", **_SNAPSHOT),
    WeightEntry("celebahq512", "CelebA-HQ.pkl", data="CelebA-HQ", resolution=512, notes="manual download",
                **_SNAPSHOT),
    WeightEntry("ffhq512", "FFHQ_512.pkl", data="FFHQ", resolution=512,
                notes="manual download; the file name is not confirmed by the README", **_SNAPSHOT),
)
MAT_256_WEIGHTS = weight_table(
    WeightEntry("celebahq256", "CelebA-HQ_256.pkl", data="CelebA-HQ", resolution=256,
                notes="retrained 2022-06-19 (the paper's model was lost); manual download; file name not "
                "confirmed by the README", **_SNAPSHOT),
)


@register_model(
    "mat",
    num_params=61_562_518,
    recipe=RECIPE,
    native_size=512,
    size_multiple=512,
    size_multiple_arg="resolution",
    num_stages=2,
    paper=PAPER,
    width_arg="dim",
    defaults=dict(resolution=512, dim=180),
    tiny=TINY,
    tiny_size=64,
    checkpoints=MAT_WEIGHTS,
    convert_checkpoint=convert_checkpoint,
    convert_discriminator=convert_discriminator,
)
def mat(**kwargs):
    return MAT(**kwargs)


@register_model(
    "mat_256",
    num_params=59_779_834,
    recipe=RECIPE,
    native_size=256,
    size_multiple=256,
    size_multiple_arg="resolution",
    num_stages=2,
    paper=PAPER,
    width_arg="dim",
    defaults=dict(resolution=256, dim=180),
    tiny=TINY,
    tiny_size=64,
    checkpoints=MAT_256_WEIGHTS,
    convert_checkpoint=convert_checkpoint,
    convert_discriminator=convert_discriminator,
)
def mat_256(**kwargs):
    return MAT(**kwargs)
