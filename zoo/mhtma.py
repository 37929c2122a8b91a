"""MHTMA (Zhou, Zeng, Gong, arXiv 2302.06130, 2023): multi-head temperature masked self-attention.

A two-stage, DeepFill-v2-style inpainter. A gated-conv coarse network gives a rough completion; a
refinement network with two parallel encoders (gated / dilated gated convolutions, and gated convolutions
around the MHTMA module) feeds one gated decoder. MHTMA is masked self-attention on unfolded, L2-normalised
query and key patches in which keys touching the hole get a constant low score and every head divides its
scores by a learned, per-image temperature from a small CNN that ends in Softplus (so it is always positive).
``mhtma_sketch`` adds a fifth input channel: a one-pixel-wide sketch inside the hole, made in training from
the ground truth by edge detection, thresholding, area opening and skeletonisation.

No public code or weights exist and the available paper text lost its equations. The layer list, equations
and every open choice follow ``reference/mhtma.md``; comments marked "(chosen)" are places where the paper is
silent. ``cnum`` is DeepFill v2's width argument: a gated layer keeps half of it, so the effective widths are
cnum/2, cnum, 2 cnum (24 / 48 / 96 at the paper's cnum = 48).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.contract import InpaintOutput, check_inputs
from zoo.deepfill import ATTENTION_BRANCH_IN, ATTENTION_BRANCH_OUT, COARSE_LAYERS, CONV_BRANCH
from zoo.errors import InputSizeError, ZooError
from zoo.layers import ConvStack, GatedConv2d
from zoo.layers.export_safe import fold_transposed, is_exporting
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model, replace_recipe

# Missing pixels start as the ImageNet mean colour [paper §IV-B]; its value was lost, the standard
# (0.485, 0.456, 0.406) is used, mapped from [0, 1] to the zoo's [-1, 1] (chosen).
IMAGENET_MEAN_M11 = tuple(2 * v - 1 for v in (0.485, 0.456, 0.406))

# The coarse network and both refinement encoders use DeepFill v2's layer tables (imported above; chosen: the
# paper names the layer types only).

# "5 gated convolution layers and a standard convolution layer" [paper §III-A]: DeepFill v2's decoder
# without its second merge conv (allconv12) (chosen, to match the stated count).
DECODER = [
    ("allconv11", 4, 3, 1, 1),
    ("allconv13_upsample", 2, 3, "up", 1),
    ("allconv14", 2, 3, 1, 1),
    ("allconv15_upsample", 1, 3, "up", 1),
    ("allconv16", 0.5, 3, 1, 1),
]


class TemperatureNet(nn.Module):
    """Per-image, per-head temperature, Eqs. (13)-(14): 4 convs, GAP and GMP in parallel, FC, Softplus.

    Chosen (the paper gives only the layer count): 3x3 stride-2 convs with LeakyReLU(0.2), ``width`` 64 at
    the paper's size, one shared trunk with one output per head, and ``eps`` = 1e-3 added after Softplus so
    that the temperature stays positive even where Softplus underflows to 0 (it also bounds logits by 1/eps).
    """

    def __init__(self, in_channels: int, heads: int, width: int = 64, depth: int = 4, eps: float = 1e-3):
        super().__init__()
        layers, channels = [], in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * width, heads)
        self.eps = eps

    def forward(self, x):
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return F.softplus(self.fc(pooled)) + self.eps  # N x heads


class MultiHeadTemperatureMaskedAttention(nn.Module):
    """MHTMA [paper §III-C, §III-D]: C x H x W features and the hole mask in, C x H x W features out.

    Per head h: a 1x1 conv embeds the features to C/heads channels (each head its own embedding); p x p patches
    are unfolded (queries zero-padded so there is one per cell, keys = values without padding); scores are
    cosine similarities of L2-normalised queries and keys (Eq. 7); keys whose patch touches the hole get the
    constant ``masked_score`` instead of score / tau_h (Eqs. 8-9); a row softmax (Eq. 10) weights the value
    patches (Eq. 11), which are folded back by overlap-averaging. The heads are concatenated (Eq. 12).

    Chosen where the paper is silent: patch 3, 2 heads, head width C/heads with no output projection and no
    residual, mask down-sampled by max pooling (a cell is missing if any of its pixels is), a key is missing
    if any cell of its patch is, lambda = -1e4, masked weights zeroed again after the softmax (a row with no
    valid key gives zeros, not an average of hole patches), values not normalised, fold divides by the number
    of patches covering each cell. Queries are processed in chunks of at most ``max_elements`` scores over all
    heads (rows are independent, so the result does not depend on the chunking). ``patches``,
    ``attention_weights`` and ``fold`` spell one head out step by step; ``forward`` runs all heads fused.
    """

    def __init__(self, channels: int, heads: int = 2, patch_size: int = 3, temperature_width: int = 64,
                 masked_score: float = -1e4, max_elements: int = 2**25, eps: float = 1e-6):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads, self.patch_size = heads, patch_size
        self.masked_score, self.max_elements, self.eps = masked_score, max_elements, eps
        self.embeddings = nn.ModuleList(nn.Conv2d(channels, channels // heads, 1) for _ in range(heads))
        self.temperature = TemperatureNet(channels, heads, temperature_width)

    def key_missing(self, mask: torch.Tensor, size) -> torch.Tensor:
        """N x N_k, 1 where a key patch contains a hole cell (Eq. 8); ``mask`` at any integer multiple of size."""
        stride = mask.shape[-1] // size[-1]  # the feature stride (4): max pooling by it, which exports everywhere
        cells = F.max_pool2d(mask, stride) if stride > 1 else mask
        return F.max_pool2d(cells, self.patch_size, stride=1).flatten(1).gt(0).to(mask.dtype)

    def patches(self, embedded: torch.Tensor):
        """Normalised queries (N x H*W x D), normalised keys and raw values (N x N_k x D), D = C_e p^2."""
        p = self.patch_size
        queries = F.unfold(embedded, p, padding=p // 2).transpose(1, 2)
        values = F.unfold(embedded, p).transpose(1, 2)
        return F.normalize(queries, dim=-1, eps=self.eps), F.normalize(values, dim=-1, eps=self.eps), values

    def attention_weights(self, queries, keys, key_missing, tau) -> torch.Tensor:
        """Rows of A (N x rows x N_k) for one head; ``key_missing`` N x N_k, ``tau`` N."""
        missing = key_missing[:, None, :].bool()  # M' = 1 m^T, broadcast over the query rows
        # Eq. 7 (cosine similarities S) and the 1/tau of Eq. 9 in one product: scaling the queries is cheaper
        # than scaling S and keeps one fewer score-sized tensor alive for the backward pass.
        scores = (queries / tau.view(-1, 1, 1)) @ keys.transpose(1, 2)
        # Eq. 9, S' = (S / tau) (1 - M') + lambda M', written as a fill (identical for finite scores)
        weights = torch.softmax(scores.masked_fill(missing, self.masked_score).float(), dim=-1)  # Eq. 10
        # Safety net A (1 - M'): valid logits are >= -1/tau >= -1/eps = -1000 and masked ones are lambda = -1e4,
        # so in every row with a valid key the masked weights already underflow to exactly 0 in fp32 (for any
        # tau above ~1.01e-4); only samples with no valid key at all need their rows zeroed.
        has_valid = (~missing).any(dim=-1, keepdim=True)
        if is_exporting() or not bool(has_valid.all()):  # no value-dependent branch in an exported graph
            weights = weights * has_valid
        return weights.to(queries.dtype)

    def fold(self, patches: torch.Tensor, size) -> torch.Tensor:
        """N x H*W x D patches back to N x C_e x H x W, averaging the overlaps."""
        p = self.patch_size
        fold = fold_transposed if is_exporting() else F.fold  # the same sums; exporters take the former anywhere
        folded = fold(patches.transpose(1, 2), tuple(size), p, padding=p // 2)
        ones = torch.ones_like(patches[:1, :, :1]).expand(1, -1, p * p).transpose(1, 2)
        return folded / fold(ones, tuple(size), p, padding=p // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temperatures: torch.Tensor | None = None):
        """Return (features, temperatures N x heads); ``temperatures`` overrides the temperature network.

        All heads at once: their 1x1 embeddings stacked into one convolution (unfolded channels come out
        head-major), and the masked softmax as one fused ``scaled_dot_product_attention`` per chunk of queries,
        equal to ``attention_weights(...) @ values``: missing keys get weight exactly 0 (a boolean mask; the
        fill with lambda gives 0 as well for every temperature the network can produce), and a sample with no
        valid key attends to all keys and is then zeroed, so no row is ever all-masked (no NaN, no NaN gradient).
        """
        n, _, h, w = x.shape
        if h < self.patch_size or w < self.patch_size:
            raise InputSizeError(f"MHTMA needs feature maps of at least {self.patch_size}x{self.patch_size}, "
                                 f"got {h}x{w}; use a larger image")
        p, heads = self.patch_size, self.heads
        key_missing = self.key_missing(mask, (h, w)).bool()
        tau = self.temperature(x) if temperatures is None else temperatures
        weight = torch.cat([embed.weight for embed in self.embeddings])
        bias = torch.cat([embed.bias for embed in self.embeddings])
        embedded = F.conv2d(x, weight, bias)

        def per_head(unfolded):  # N x heads*D x L -> N x heads x L x D
            return unfolded.view(n, heads, -1, unfolded.shape[-1]).transpose(2, 3)

        queries = F.normalize(per_head(F.unfold(embedded, p, padding=p // 2)), dim=-1, eps=self.eps)
        values = per_head(F.unfold(embedded, p))
        keys = F.normalize(values, dim=-1, eps=self.eps)
        queries = queries / tau.view(n, heads, 1, 1)  # Eq. 9's 1/tau, so the attention's own scale is 1
        has_valid = (~key_missing).any(dim=-1)  # N
        attend = (~key_missing | ~has_valid[:, None])[:, None, None, :]  # N x 1 x 1 x N_k, True = may attend
        rows = max(1, self.max_elements // (n * heads * key_missing.shape[1]))
        # one chunk when exporting: a size-dependent chunk count cannot follow a free size
        chunks = [queries] if is_exporting() else queries.split(rows, dim=2)
        refined = torch.cat([F.scaled_dot_product_attention(q, keys, values, attn_mask=attend, scale=1.0)
                             for q in chunks], dim=2)  # Eqs. 10-11
        refined = refined * has_valid.view(n, 1, 1, 1).to(refined.dtype)
        fold = fold_transposed if is_exporting() else F.fold  # the same sums; exporters take the former anywhere
        folded = fold(refined.transpose(2, 3).reshape(n, -1, h * w), (h, w), p, padding=p // 2)
        ones = torch.ones_like(refined[:1, 0, :, :1]).expand(1, -1, p * p).transpose(1, 2)  # 1 x p*p x H*W
        return folded / fold(ones, (h, w), p, padding=p // 2), tau  # heads concatenated (Eq. 12)


class MHTMA(nn.Module):
    """Coarse network + refinement network with a conv branch and an MHTMA branch, one gated decoder.

    Input ``[I_fill, M]`` (plus the sketch mask ``S * M`` when ``sketch=True``) to both stages; the refinement
    stage sees the coarse composite and the mask (chosen: DeepFill v2 feeds it the composite only).
    """

    def __init__(self, cnum: int = 48, heads: int = 2, patch_size: int = 3, temperature_width: int = 64,
                 sketch: bool = False, masked_score: float = -1e4, attention_max_elements: int = 2**25):
        super().__init__()
        self.sketch = sketch
        in_channels = 5 if sketch else 4  # RGB, mask (, sketch mask) [paper §IV-F]
        self.coarse = ConvStack(COARSE_LAYERS, in_channels, cnum)
        self.coarse.add_module("conv17", GatedConv2d(self.coarse.out_channels, 3, 3, activation=None))
        self.conv_branch = ConvStack(CONV_BRANCH, in_channels, cnum)
        self.attention_in = ConvStack(ATTENTION_BRANCH_IN, in_channels, cnum, relu_layers={"pmconv6"})
        self.attention = MultiHeadTemperatureMaskedAttention(
            self.attention_in.out_channels, heads, patch_size, temperature_width, masked_score, attention_max_elements
        )
        self.attention_out = ConvStack(ATTENTION_BRANCH_OUT, self.attention_in.out_channels, cnum)
        merged = self.conv_branch.out_channels + self.attention_out.out_channels
        self.decoder = ConvStack(DECODER, merged, cnum)
        self.decoder.add_module("allconv17", GatedConv2d(self.decoder.out_channels, 3, 3, activation=None))
        self.register_buffer("fill", torch.tensor(IMAGENET_MEAN_M11).view(1, 3, 1, 1), persistent=False)

    def _guidance(self, mask, sketch):
        if not self.sketch:
            if sketch is not None:
                raise ZooError("this MHTMA model takes no sketch; use mhtma_sketch for sketch guidance")
            return [mask]
        if sketch is None:  # nothing drawn: no guidance
            sketch = torch.zeros_like(mask)
        if sketch.dim() != 4 or sketch.shape[1] != 1 or sketch.shape[-2:] != mask.shape[-2:]:
            raise InputSizeError(f"sketch must be N x 1 x H x W like the mask {tuple(mask.shape)}, "
                                 f"got {tuple(sketch.shape)}")
        return [mask, sketch.to(mask.dtype) * mask]  # only lines inside the hole guide [paper §IV-F]

    def forward(self, masked_image, mask, sketch: torch.Tensor | None = None) -> InpaintOutput:
        check_inputs(masked_image, mask, multiple=4)
        guidance = self._guidance(mask, sketch)
        known = masked_image * (1 - mask)  # whatever the caller passed, hole pixels are never read
        filled = known + self.fill.to(known.dtype) * mask
        coarse = torch.tanh(self.coarse.conv17(self.coarse(torch.cat([filled, *guidance], dim=1))))

        x = torch.cat([coarse * mask + known, *guidance], dim=1)
        conv_features = self.conv_branch(x)
        attention_features, temperatures = self.attention(self.attention_in(x), mask)
        attention_features = self.attention_out(attention_features)
        x = self.decoder(torch.cat([conv_features, attention_features], dim=1))
        fine = torch.tanh(self.decoder.allconv17(x))
        aux = {"temperature": temperatures}  # N x heads: the trainer logs aux/temperature_0, _1 (Fig. 6)
        if self.sketch:
            aux["sketch"] = guidance[1].expand(-1, 3, -1, -1) * 2 - 1  # drawn in sample grids
        return InpaintOutput(stages=(coarse, fine), aux=aux)


# ---------------------------------------------------------------------------------------------------------
# Sketches [paper §IV-F]: edge map -> threshold -> area opening (8-connected components < 100 px removed)
# -> skeletonisation to one-pixel lines. The paper's edge detector is PiDiNet, whose weights are not available
# here: by default a classical substitute (Scharr magnitude of the blurred luminance, divided by its 99th
# percentile); ``edge_map`` accepts any precomputed map in [0, 1] (e.g. PiDiNet's) instead.


def edge_map(image: torch.Tensor, detector: str = "scharr", sigma: float | None = None) -> np.ndarray:
    """H x W edge strength in [0, 1] (``scharr``) or binary edges (``canny``) of a 3 x H x W image in [-1, 1]."""
    from skimage import feature, filters

    rgb = (image.detach().float().cpu().clamp(-1, 1).numpy() + 1) / 2
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if detector == "canny":
        return feature.canny(luma, sigma=2.0 if sigma is None else sigma).astype(np.float32)
    if detector != "scharr":
        raise ValueError(f"detector must be 'scharr' or 'canny', got {detector!r}")
    strength = filters.scharr(filters.gaussian(luma, sigma=1.5 if sigma is None else sigma))
    scale = np.percentile(strength, 99)
    if scale <= 0:  # a flat image has no edges
        return np.zeros_like(luma, dtype=np.float32)
    return np.clip(strength / scale, 0, 1).astype(np.float32)


def sketch_steps(edges: np.ndarray, threshold: float = 0.65, min_area: int = 100) -> dict:
    """The stages of the pipeline on an H x W edge map in [0, 1]: ``binary``, ``opened``, ``sketch`` (bool)."""
    from skimage.morphology import area_opening, skeletonize

    binary = np.asarray(edges) > threshold  # t = 0.65 [paper, Paris StreetView]; a default for the substitute
    opened = area_opening(binary.astype(np.uint8), area_threshold=min_area, connectivity=2).astype(bool)
    return {"binary": binary, "opened": opened, "sketch": skeletonize(opened)}


def make_sketch(image: torch.Tensor | None = None, edges: np.ndarray | torch.Tensor | None = None,
                detector: str = "scharr", threshold: float = 0.65, min_area: int = 100) -> torch.Tensor:
    """1 x H x W sketch in {0, 1} from a 3 x H x W image in [-1, 1], or from a precomputed edge map."""
    if edges is None:
        if image is None:
            raise ValueError("give an image or a precomputed edge map")
        edges = edge_map(image, detector)
    edges = edges.detach().cpu().float().numpy() if torch.is_tensor(edges) else np.asarray(edges, np.float32)
    sketch = sketch_steps(edges.squeeze(), threshold, min_area)["sketch"]
    return torch.from_numpy(sketch.astype(np.float32))[None]


def sketch_condition(image: torch.Tensor, mask: torch.Tensor) -> dict:
    """Recipe condition of ``mhtma_sketch``: the ground truth's sketch inside the hole, N x 1 x H x W."""
    sketch = torch.stack([make_sketch(img) for img in image]).to(image.device)
    return {"sketch": sketch * mask}


def sketch_from_drawing(drawing: np.ndarray) -> torch.Tensor:
    """A user's drawing (H x W, nonzero = stroke) thinned to one-pixel lines like the training sketches."""
    from skimage.morphology import skeletonize

    return torch.from_numpy(skeletonize(np.asarray(drawing) > 0).astype(np.float32))



# ---------------------------------------------------------------------------------------------------------
# Export (zoo/export.py): traced at any size; mhtma_sketch takes the sketch as a third input (zeros = no sketch).


def _export_inputs(model, batch, height, width):
    return {"sketch": (torch.zeros(batch, 1, height, width), "zeros")} if model.sketch else {}


EXPORT = dict(exporter="torchscript", dynamic=True, inputs=_export_inputs,
              weights_license="no released weights: the licence of whoever trained them")


# ---------------------------------------------------------------------------------------------------------
# Presets

PAPER = ("Zhou et al., Learning to Scale Temperature in Masked Self-Attention for Image Inpainting, "
         "arXiv 2302.06130 (2023)")

RECIPE = Recipe(
    # Global-local discriminator of Iizuka et al. with spectral normalisation and the hinge loss on its logit
    # [paper §III-A, §III-B]; widths, 5x5 kernels, FC 1024 and the 128-px local window (at 256) from Iizuka
    # (chosen). The local window is centred on the hole's bounding box (the shared discriminator's rule, so
    # real and fake get the same window) rather than on a randomly drawn hole pixel.
    discriminator="global_local",
    discriminator_kwargs=dict(in_channels=3, cnum=64, global_mults=(1, 2, 4, 8, 8, 8), local_mults=(1, 2, 4, 8, 8),
                              local_fraction=0.5, fuse="concat", fc_width=1024, spectral_norm=True),
    # "Decoupled joint loss": L1 on both stages, VGG-16 perceptual on the coarse output only, adversarial on
    # the final composite. The weights were lost: 1, 1, 0.05, 0.1 (chosen; reference/mhtma.md §5).
    losses=(
        LossTerm("l1", 1.0, stage=0),
        LossTerm("l1", 1.0, stage=1),
        LossTerm("perceptual", 0.05, stage=0,
                 kwargs=dict(network="vgg16", layers=("pool1", "pool2", "pool3"), normalize="imagenet")),
    ),
    adversarial=AdversarialSpec(loss="hinge", weight=0.1, fake="composite", d_steps=1),
    # Adam lr 1e-4 for G and D [paper §IV-B]; betas lost, DeepFill v2's (0.5, 0.999) (chosen).
    optim_g=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    optim_d=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    batch_size=16,
    masks="free_form_and_square",  # brush strokes + a 96 x 96 square [paper §IV-A]
)

SKETCH_RECIPE = replace_recipe(RECIPE, condition=sketch_condition)

_COMMON = dict(native_size=256, size_multiple=4, num_stages=2, paper=PAPER, width_arg="cnum",
               tiny=dict(cnum=8, temperature_width=16), tiny_size=64)


@register_model("mhtma", recipe=RECIPE, defaults=dict(cnum=48), num_params=4_063_312, **_COMMON)
def mhtma(**kwargs):
    return MHTMA(**kwargs)


@register_model("mhtma_sketch", recipe=SKETCH_RECIPE, defaults=dict(cnum=48), num_params=4_066_912,
                **_COMMON)
def mhtma_sketch(**kwargs):
    return MHTMA(sketch=True, **kwargs)
