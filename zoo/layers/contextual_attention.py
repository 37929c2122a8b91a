"""Contextual attention (Yu et al., CVPR 2018), computed in blocks of foreground positions.

For every foreground position the layer scores all background patches by cosine-like similarity
(foreground raw, background patch L2-normalised), fuses the scores along diagonals so that neighbouring
positions prefer coherent shifts, drops background patches that touch the hole, takes a softmax with scale
10, and pastes the weighted full-resolution background patches back (a transposed convolution).

The official code builds the whole (foreground x background) score volume, whose size grows with the 4th
power of the image side (24 GB at 1080p, JiahuiYu/generative_inpainting#144). Here the score rows are
produced for a block of foreground positions at a time, together with the few neighbouring rows the
fusion needs, so the score buffers stay near ``max_elements`` floats while the result equals the
one-block computation.

For export (``is_exporting()``, or ``dense=True``) the layer takes a static-graph path instead: the whole
batch's score matrices at once, the fusion as the official identity convolutions, and a max-subtracted
softmax (``stable_softmax``, fp16-safe), with no loop or branch that depends on values or sizes; it equals
the blocked path to float rounding and is what ONNX and TorchScript files contain.

Fusion follows the official implementation exactly: an identity 3x3 convolution over the score matrix
laid out as a (foreground x background) image, first with both axes in row-major order, then with both
in column-major order. Neighbours in the flattened order wrap across rows (columns), as they do there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.export_safe import fold_transposed, is_exporting, stable_softmax
from zoo.layers.gated_conv import resize_nearest_aligned

PATCH_NORMS = ("clamp", "additive")


class ContextualAttention(nn.Module):
    """``patch_norm``: how matching patches are normalised. ``"clamp"`` divides by max(||w||, 1e-4) as the
    official TF code and nipponjo's ports do; ``"additive"`` divides by sqrt(sum(w^2 + 1e-4)) as daa233's
    DeepFill v1 port (whose trained weights expect it). ``align_corners``: TF1-style nearest down-scaling
    (for converted TF weights) instead of PyTorch's.
    """

    def __init__(
        self,
        patch_size: int = 3,
        rate: int = 2,
        softmax_scale: float = 10.0,
        fuse: bool = True,
        fuse_k: int = 3,
        align_corners: bool = False,
        patch_norm: str = "clamp",
        max_elements: int = 2**26,
        dense: bool = False,
    ):
        super().__init__()
        if patch_size % 2 != 1:
            raise ValueError("patch_size must be odd")
        if rate != 2:
            raise ValueError("only rate 2 (both DeepFill versions) is implemented")
        if fuse_k != 3:
            raise ValueError("only fuse_k 3 (both DeepFill versions) is implemented")
        if patch_norm not in PATCH_NORMS:
            raise ValueError(f"patch_norm must be one of {PATCH_NORMS}")
        self.patch_size, self.rate, self.softmax_scale = patch_size, rate, softmax_scale
        self.fuse, self.fuse_k = fuse, fuse_k
        self.align_corners = align_corners
        self.patch_norm = patch_norm
        # Score-matrix entries per block of foreground rows (2**26 floats = 256 MiB). The fusion holds about
        # three buffers of (block + 2 image rows) x background entries, so peak memory is a few times this.
        self.max_elements = max_elements
        self.dense = dense  # the static-graph path even when not exporting (tests compare the two)

    def extra_repr(self):
        return (f"patch_size={self.patch_size}, rate={self.rate}, softmax_scale={self.softmax_scale}, "
                f"fuse={self.fuse}, align_corners={self.align_corners}, patch_norm={self.patch_norm}")

    def _resize(self, x, h, w):
        if self.align_corners:
            return resize_nearest_aligned(x, h, w)
        return F.interpolate(x, size=(h, w), mode="nearest")

    def forward(self, foreground, background, mask):
        """``foreground``, ``background``: N x C x H x W features; ``mask`` (1 = hole): N x 1 x H x W, or
        already at the matching resolution N x 1 x H/rate x W/rate (then it is used as given).

        Returns the attended features (N x C x H x W) and the offset of each position's best-matching
        background patch (N x 2 x H/rate x W/rate, (dy, dx) in down-scaled pixels) for visualisation.
        """
        if foreground.shape != background.shape:
            raise ValueError("foreground and background features must have the same shape (DeepFill uses x, x)")
        height, width = background.shape[-2:]
        if height % self.rate or width % self.rate:
            raise ValueError(f"feature size {height}x{width} must be divisible by rate {self.rate}")
        h, w = height // self.rate, width // self.rate
        if mask.shape[-2:] == (h, w):
            small_mask = mask
        elif mask.shape[-2:] == (height, width):
            small_mask = self._resize(mask, h, w)
        else:
            raise ValueError(f"mask of size {tuple(mask.shape[-2:])} fits neither {height}x{width} nor {h}x{w}")
        f_small, b_small = self._resize(foreground, h, w), self._resize(background, h, w)
        if self.dense or is_exporting():
            return self._attend_dense(f_small, b_small, background, small_mask)
        attend = self._attend_one
        if torch.compiler.is_compiling():
            # Left eager: inductor fused the score fusion, mask and softmax into one kernel walking the score
            # matrix in its permuted (column-major) order, 0.6 s per DeepFill v2 forward at 256 px on the CPU
            # where the whole eager attention takes about 0.06 s. (Disabled here, not by a decorator: that would
            # import torch._dynamo, ~150 MB, with every DeepFill model.)
            attend = torch.compiler.disable(attend)
        outputs, offsets = [], []
        for i in range(background.shape[0]):
            out, offset = attend(f_small[i : i + 1], b_small[i : i + 1], background[i : i + 1],
                                           small_mask[i : i + 1])
            outputs.append(out)
            offsets.append(offset)
        return torch.cat(outputs), torch.stack(offsets)

    def _normalise(self, match):
        if self.patch_norm == "clamp":
            return match / match.norm(dim=-2, keepdim=True).clamp_min(1e-4)
        return match / (match.square() + 1e-4).sum(dim=-2, keepdim=True).sqrt()

    def _attend_dense(self, f_small, b_small, b, m_small):
        """The whole batch in one score tensor (N x P x L); every shape follows from the input's."""
        rate, k = self.rate, self.patch_size
        pad = k // 2
        n, _, height, width = b.shape
        h, w = f_small.shape[-2:]
        raw_patches = F.unfold(b, 2 * rate, padding=1, stride=rate)  # N x (C * 16) x L
        match = self._normalise(F.unfold(b_small, k, padding=pad))  # N x (C k k) x L
        queries = F.unfold(f_small, k, padding=pad)  # N x (C k k) x P
        valid = F.unfold(m_small, k, padding=pad).mean(dim=1).eq(0).to(b.dtype)[:, None, :]  # N x 1 x L
        scores = queries.transpose(1, 2) @ match
        if self.fuse:
            scores = fuse_scores_dense(scores, h, w)
        attention = stable_softmax(scores * valid, dim=2, scale=self.softmax_scale) * valid
        cols = attention @ raw_patches.transpose(1, 2)  # N x P x (C * 16)
        out = fold_transposed(cols.transpose(1, 2), (height, width), 2 * rate, padding=1, stride=rate) / 4.0
        best = attention.argmax(dim=2)  # N x P
        own = torch.arange(h * w, device=b.device)
        best_row, own_row = best // w, own // w
        offset = torch.stack([best_row - own_row, (best - best_row * w) - (own - own_row * w)], dim=1)
        return out, offset.view(n, 2, h, w)

    def _attend_one(self, f_small, b_small, b, m_small):
        rate, k = self.rate, self.patch_size
        height, width = b.shape[-2:]
        h, w = f_small.shape[-2:]
        # Full-resolution 4x4 background patches, stride 2 (TF SAME pads 1 on each side): (C * 16) x L.
        raw_patches = F.unfold(b, 2 * rate, padding=1, stride=rate)[0]
        pad = k // 2
        match = self._normalise(F.unfold(b_small, k, padding=pad)[0])  # (C k k) x L
        queries = F.unfold(f_small, k, padding=pad)[0]  # (C k k) x P
        # A background patch is usable only if none of its pixels lies in the hole.
        valid = F.unfold(m_small, k, padding=pad)[0].mean(dim=0).eq(0).to(b.dtype)  # L
        positions, patches = h * w, h * w

        def scores_of(rows):
            return queries[:, rows].t() @ match

        rows_per_block = max(1, self.max_elements // patches)
        cols = None  # (C * 16) x P: the pasted patch of every position, the layout fold wants
        best = torch.empty(positions, dtype=torch.long, device=b.device)
        for start in range(0, positions, rows_per_block):
            stop = min(start + rows_per_block, positions)
            if not self.fuse:
                scores = queries[:, start:stop].t() @ match
            elif stop - start == positions:  # the whole score matrix at once: fuse with shifted slices
                scores = fuse_scores_full(queries.t() @ match, h, w)
            else:
                scores = _fused_scores(torch.arange(start, stop, device=b.device), scores_of, h, w)
            scores.mul_(valid).mul_(self.softmax_scale)
            drop_negligible_(scores)
            attention = torch.softmax(scores, dim=1)
            del scores
            # in place unless autograd needs the softmax output for its backward pass
            attention = attention.mul_(valid) if not attention.requires_grad else attention * valid
            if stop - start == positions:
                cols = raw_patches @ attention.t()
            else:
                if cols is None:
                    cols = torch.empty(raw_patches.shape[0], positions, device=b.device, dtype=b.dtype)
                cols[:, start:stop] = raw_patches @ attention.t()
            best[start:stop] = attention.argmax(dim=1)
            del attention

        # Overlap-add of the pasted patches = the official transposed convolution, divided by 4 as there.
        out = F.fold(cols[None], (height, width), 2 * rate, padding=1, stride=rate) / 4.0
        own = torch.arange(positions, device=b.device)
        offset = torch.stack([best // w - own // w, best % w - own % w]).view(2, h, w)
        return out, offset


# Softmax weights below exp(-NEGLIGIBLE_LOGIT) times the row's largest (~1e-26) are set to exactly zero. Left in,
# many of them are subnormal floats (a sharp softmax with scale 10 over a thousand patches), and every matrix
# product and softmax gradient that touches a subnormal runs many times slower on x86 CPUs: DeepFill v1's
# forward + backward took 5x the official time on random weights. Dropping them changes each output by less than
# 1e-26 of the patch values.
NEGLIGIBLE_LOGIT = 60.0


def drop_negligible_(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """In place: logits more than NEGLIGIBLE_LOGIT below their row's maximum become -inf (softmax weight 0)."""
    floor = logits.detach().amax(dim=dim, keepdim=True) - NEGLIGIBLE_LOGIT
    return logits.masked_fill_(logits < floor, float("-inf"))


# ---------------------------------------------------------------------------------------------------------
# The official two-pass diagonal score fusion, restricted to a block of foreground rows.
#
# With positions p (foreground) and l (background) both flattened, pass 1 (row-major) is
#   F1[p, l] = S[p-1, l-1] + S[p, l] + S[p+1, l+1]
# and pass 2 the same in column-major order of both axes. A term is zero when either index leaves the
# range (the zero padding of the official convolution). Both foreground and background grids are h x w.


def _neighbours(rows, h, w, order):
    """Row-major ids at flattened distance -1, 0, +1 in ``order`` ("rm" or "cm"); -1 where out of range."""
    positions = h * w
    if order == "rm":
        return [torch.where((r >= 0) & (r < positions), r, -1) for r in (rows - 1, rows, rows + 1)]
    cm = (rows % w) * h + rows // w
    out = []
    for d in (-1, 0, 1):
        c = cm + d
        rm = (c % h) * w + c // h
        out.append(torch.where((c >= 0) & (c < positions), rm, -1))
    return out


def _diagonal_sum(values, lookup, neighbour_rows, h, w, order):
    """Sum over d in (-1, 0, 1) of values[row at distance d], its columns shifted by d in ``order``."""
    total = values.index_select(0, lookup[neighbour_rows[1]])
    for d in (-1, 1):
        rows = neighbour_rows[d + 1]
        picked = values.index_select(0, lookup[rows.clamp_min(0)].clamp_min(0))
        picked[rows < 0] = 0
        # total[:, l] += picked[:, l + d] in the flattened ``order`` of the background (zero out of range)
        if order == "rm":
            if d == 1:
                total[:, :-1] += picked[:, 1:]
            else:
                total[:, 1:] += picked[:, :-1]
        else:  # column-major step = one background row down (w in row-major ids), wrapping to the next column
            last = (h - 1) * w
            if d == 1:
                total[:, : last] += picked[:, w:]
                total[:, last : last + w - 1] += picked[:, 1:w]
            else:
                total[:, w:] += picked[:, : last]
                total[:, 1:w] += picked[:, last : last + w - 1]
        del picked
    return total


def _fused_scores(rows, scores_of, h, w):
    """Fused score rows for foreground ``rows`` (row-major ids), computing raw scores only where needed."""
    positions = h * w
    second = _neighbours(rows, h, w, "cm")
    mid = torch.unique(torch.cat([r[r >= 0] for r in second]))
    first = _neighbours(mid, h, w, "rm")
    raw = torch.unique(torch.cat([r[r >= 0] for r in first]))

    lookup = torch.full((positions,), -1, dtype=torch.long, device=rows.device)
    lookup[raw] = torch.arange(len(raw), device=rows.device)
    fused1 = _diagonal_sum(scores_of(raw), lookup, first, h, w, "rm")  # rows ``mid``

    lookup = torch.full((positions,), -1, dtype=torch.long, device=rows.device)
    lookup[mid] = torch.arange(len(mid), device=rows.device)
    return _diagonal_sum(fused1, lookup, second, h, w, "cm")


def _shifted_sum(scores: torch.Tensor) -> torch.Tensor:
    """out[p, l] = S[p - 1, l - 1] + S[p, l] + S[p + 1, l + 1] over a P x L matrix (zero outside): the official
    3x3 identity convolution, as two slice additions."""
    if scores.requires_grad:  # out of place: autograd handles padded slices better than in-place slice updates
        return scores + F.pad(scores[:-1, :-1], (1, 0, 1, 0)) + F.pad(scores[1:, 1:], (0, 1, 0, 1))
    out = scores.clone()
    out[1:, 1:] += scores[:-1, :-1]
    out[:-1, :-1] += scores[1:, 1:]
    return out


def fuse_scores_full(scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Both fusion passes on one whole P x P score matrix (P = h w): row-major, then with both axes re-laid in
    column-major order. Equals ``fuse_scores_dense`` (the official convolutions) without the convolutions."""
    fused = _shifted_sum(scores)
    by_column = fused.view(h, w, h, w).permute(1, 0, 3, 2).reshape(h * w, h * w)
    fused = _shifted_sum(by_column)
    return fused.view(w, h, w, h).permute(1, 0, 3, 2).reshape(h * w, h * w)


def fuse_scores_dense(scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The two fusion passes on whole N x P x L score matrices, as the official code computes them: an identity
    3x3 convolution over each matrix as an image, with both axes row-major, then both column-major."""
    n = scores.shape[0]
    eye = torch.eye(3, dtype=scores.dtype, device=scores.device)[None, None]
    fused = F.conv2d(scores.reshape(n, 1, h * w, h * w), eye, padding=1)
    by_column = fused.reshape(n, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(n, 1, h * w, h * w)
    fused = F.conv2d(by_column, eye, padding=1)
    return fused.reshape(n, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(n, h * w, h * w)
