"""Contextual attention (Yu et al., CVPR 2018), computed in chunks of foreground positions.

For every foreground position the layer scores all background patches by cosine-like similarity
(foreground raw, background patch L2-normalised), fuses the scores along diagonals so that neighbouring
positions prefer coherent shifts, drops background patches that touch the hole, takes a softmax with scale
10, and pastes the weighted full-resolution background patches back (a transposed convolution).

The official code builds the whole (foreground x background) score volume, whose size grows with the 4th
power of the image side. Here the score rows are produced for a block of foreground positions at a time,
together with the few neighbouring rows the fusion needs, so peak memory is bounded by ``max_elements``
while the result equals the one-block computation.

Fusion follows the official implementation exactly: an identity 3x3 convolution over the score matrix
laid out as a (foreground x background) image, first with both axes in row-major order, then with both
in column-major order. Neighbours in the flattened order wrap across rows (columns), as they do there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.gated_conv import resize_nearest_aligned


class ContextualAttention(nn.Module):
    def __init__(
        self,
        patch_size: int = 3,
        rate: int = 2,
        softmax_scale: float = 10.0,
        fuse: bool = True,
        fuse_k: int = 3,
        align_corners: bool = False,
        max_elements: int = 2**25,
    ):
        super().__init__()
        if patch_size % 2 != 1:
            raise ValueError("patch_size must be odd")
        if rate != 2:
            raise ValueError("only rate 2 (both DeepFill versions) is implemented")
        self.patch_size, self.rate, self.softmax_scale = patch_size, rate, softmax_scale
        self.fuse, self.fuse_k = fuse, fuse_k
        self.align_corners = align_corners
        # Upper bound on score-matrix entries held at once per block (2**25 floats = 128 MiB).
        self.max_elements = max_elements

    def extra_repr(self):
        return f"patch_size={self.patch_size}, rate={self.rate}, softmax_scale={self.softmax_scale}, fuse={self.fuse}"

    def _downscale(self, x):
        h, w = x.shape[-2] // self.rate, x.shape[-1] // self.rate
        if self.align_corners:
            return resize_nearest_aligned(x, h, w)
        return F.interpolate(x, size=(h, w), mode="nearest")

    def forward(self, foreground, background, mask):
        """``foreground``, ``background``: N x C x H x W features; ``mask``: N x 1 x H x W, 1 = hole.

        Returns the attended features (N x C x H x W) and the offset of each position's best-matching
        background patch (N x 2 x H/rate x W/rate, (dy, dx) in down-scaled pixels) for visualisation.
        """
        outputs, offsets = [], []
        for f, b, m in zip(foreground, background, mask):
            out, offset = self._attend_one(f[None], b[None], m[None])
            outputs.append(out)
            offsets.append(offset)
        return torch.cat(outputs), torch.stack(offsets)

    def _attend_one(self, f, b, m):
        rate, k = self.rate, self.patch_size
        height, width = b.shape[-2:]
        # Full-resolution 4x4 background patches, stride 2 (TF SAME pads 1 on each side): (C * 16) x L.
        raw_patches = F.unfold(b, 2 * rate, padding=1, stride=rate)

        f_small, b_small, m_small = self._downscale(f), self._downscale(b), self._downscale(m)
        h, w = f_small.shape[-2:]
        hb, wb = b_small.shape[-2:]
        pad = k // 2
        match = F.unfold(b_small, k, padding=pad)[0]  # (C k k) x L
        match = match / match.norm(dim=0, keepdim=True).clamp_min(1e-4)
        queries = F.unfold(f_small, k, padding=pad)[0]  # (C k k) x P
        # A background patch is usable only if none of its pixels lies in the hole.
        valid = F.unfold(m_small, k, padding=pad)[0].mean(dim=0).eq(0).to(f.dtype)  # L
        positions, patches = h * w, hb * wb
        if raw_patches.shape[-1] != patches:
            raise ValueError(f"feature size {height}x{width} must be divisible by rate {rate}")

        fusion = _Fusion(h, w, hb, wb, f.device) if self.fuse else None
        rows_per_block = max(1, self.max_elements // patches)
        cols = torch.empty(positions, raw_patches.shape[1], device=f.device, dtype=f.dtype)
        best = torch.empty(positions, dtype=torch.long, device=f.device)
        for start in range(0, positions, rows_per_block):
            rows = torch.arange(start, min(start + rows_per_block, positions), device=f.device)
            if fusion is None:
                scores = queries[:, rows].t() @ match
            else:
                scores = fusion.fused_rows(rows, lambda r: queries[:, r].t() @ match)
            scores = scores * valid
            attention = torch.softmax(scores * self.softmax_scale, dim=1) * valid
            cols[rows] = attention @ raw_patches[0].t()
            best[rows] = attention.argmax(dim=1)

        # Overlap-add of the pasted patches = the official transposed convolution, divided by 4 as there.
        out = F.fold(cols.t()[None], (height, width), 2 * rate, padding=1, stride=rate) / 4.0
        own = torch.arange(positions, device=f.device)
        offset = torch.stack([best // wb - own // w, best % wb - own % w]).view(2, h, w)
        return out, offset


class _Fusion:
    """Index arithmetic for the official two-pass diagonal score fusion, restricted to a block of rows."""

    def __init__(self, h, w, hb, wb, device):
        self.h, self.w, self.hb, self.wb = h, w, hb, wb
        self.positions, self.patches = h * w, hb * wb
        self.device = device
        fg = torch.arange(self.positions, device=device)
        bg = torch.arange(self.patches, device=device)
        # column-major index of a row-major index, and back; for foreground (f) and background (b).
        self.f_rm_to_cm = (fg % w) * h + fg // w
        self.f_cm_to_rm = (fg % h) * w + fg // h
        self.b_rm_to_cm = (bg % wb) * hb + bg // wb
        self.b_cm_to_rm = (bg % hb) * wb + bg // hb

    def _neighbours(self, rows, order):
        """Rows at flattened distance -1, 0, +1 in ``order`` ('rm' or 'cm'), -1 where out of range."""
        if order == "rm":
            shifted = [rows + d for d in (-1, 0, 1)]
            return [torch.where((s >= 0) & (s < self.positions), s, -1) for s in shifted]
        cm = self.f_rm_to_cm[rows]
        out = []
        for d in (-1, 0, 1):
            c = cm + d
            ok = (c >= 0) & (c < self.positions)
            out.append(torch.where(ok, self.f_cm_to_rm[c.clamp(0, self.positions - 1)], -1))
        return out

    @staticmethod
    def _shift_columns(x, d):
        """y[:, l] = x[:, l + d], zero where l + d is out of range."""
        if d == 0:
            return x
        out = torch.zeros_like(x)
        if d > 0:
            out[:, :-d] = x[:, d:]
        else:
            out[:, -d:] = x[:, :d]
        return out

    def _diagonal_sum(self, values, lookup, neighbour_rows):
        """sum_d shift(values[lookup[row + d]], d) over the three diagonal neighbours."""
        total = 0
        for d, rows in zip((-1, 0, 1), neighbour_rows):
            picked = values[lookup[rows.clamp_min(0)]] * (rows >= 0).unsqueeze(1).to(values.dtype)
            total = total + self._shift_columns(picked, d)
        return total

    def fused_rows(self, rows, score_rows):
        # Rows of the first (row-major) pass needed by the second pass, and raw rows needed by those.
        second = self._neighbours(rows, "cm")
        mid = torch.unique(torch.cat([r[r >= 0] for r in second]))
        first = self._neighbours(mid, "rm")
        raw = torch.unique(torch.cat([r[r >= 0] for r in first]))

        lookup = torch.full((self.positions,), -1, dtype=torch.long, device=self.device)
        lookup[raw] = torch.arange(len(raw), device=self.device)
        fused1 = self._diagonal_sum(score_rows(raw), lookup, first)  # rows `mid`, background row-major

        fused1 = fused1[:, self.b_cm_to_rm]  # background columns in column-major order
        lookup = torch.full((self.positions,), -1, dtype=torch.long, device=self.device)
        lookup[mid] = torch.arange(len(mid), device=self.device)
        fused2 = self._diagonal_sum(fused1, lookup, second)
        return fused2[:, self.b_rm_to_cm]  # back to row-major background order
