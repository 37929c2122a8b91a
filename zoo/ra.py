"""RA: Region-aware Attention for Image Inpainting (arXiv 2204.01004, 2022): a single-stage generator.

An encoder of three convolutions whose first two carry a local-global attention (LGA) layer, four residual
dilated blocks, and a decoder of three layers (paper §3.3). The LGA layer fuses a global branch, region-aware
attention (RA), with a local SE branch by selective-kernel (SK) selection (§3.2).

RA (§3.1) never compares pixels with each other. A 5x5 convolution maps each pixel to n region channels; each
channel is pooled onto a coarse grid, flattened, and passed through ONE linear layer shared by all channels
(a learned map from every grid cell to every grid cell, so holes are predicted from the whole image); the
result is upsampled, refined by conv + BN and soft-maxed over regions into region masks RM. Every pixel then
receives the RM-weighted sum of a learnable region dictionary D (n x c) shared by the whole dataset, added to
its input.

No public code exists and the architecture figure is lost: layer widths, kernels and strides beyond those the
text names are the choices of ``reference/ra.md`` (EdgeConnect / RT style backbone). Comments marked
"chosen" say where this file picks something the paper leaves open.

Resolution tie: the shared linear layer is (h/r * w/r) x (h/r * w/r) for the feature size it was built for,
so the generator takes ``image_size`` (the training size). Other input sizes work by resampling the region
grid (ra.md §4, option 1): features are adaptive-average-pooled onto the trained grid, which at the trained
size is exactly the paper's 4x average pooling, and the grid output is upsampled to the actual size.
"""

from __future__ import annotations

import colorsys
import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.contract import InpaintOutput, check_inputs
from zoo.errors import InputSizeError, ZooError
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model

REDUCTION = 4  # r: the region grid is the feature map down-sampled 4x [paper §3.1.1]


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


# ---------------------------------------------------------------------------------------------------------
# Region-aware attention


class RegionMaskGenerator(nn.Module):
    """Eqs. (1)-(3): features (N x c x h x w) -> region masks RM (N x n x h x w, softmax over n) and RM^c.

    ``grid`` is the (h/r, w/r) grid of the feature size the module was built for; the shared linear layer
    maps that flattened grid onto itself. Any other feature size is pooled onto the same grid (ra.md §4).
    """

    def __init__(self, channels: int, regions: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        cells = grid[0] * grid[1]
        self.to_regions = nn.Conv2d(channels, regions, 5, padding=2)  # "5x5 convolution ... n-dim subspace"
        # Eq. (1): one Linear(L, L) applied to every region channel's flattened grid (weights shared over
        # channels and samples). No activation after it (chosen).
        self.grid_linear = nn.Linear(cells, cells)
        self.refine = nn.Conv2d(regions, regions, 3, padding=1)  # Eq. (2) "a convolution"; 3x3 chosen
        self.norm = nn.BatchNorm2d(regions)

    def forward(self, x):
        size = x.shape[-2:]
        regions = self.to_regions(x)
        # Average pooling (chosen; the paper says "downsampled by 4 times"). adaptive_avg_pool2d onto the
        # trained grid equals avg_pool2d(4) at the trained size and resamples the grid at any other size.
        if size[0] % self.grid[0] == 0 and size[1] % self.grid[1] == 0:  # the same pooling, in a form exporters take
            grid = F.avg_pool2d(regions, (int(size[0]) // self.grid[0], int(size[1]) // self.grid[1]))
        else:
            grid = F.adaptive_avg_pool2d(regions, self.grid)
        coarse = self.grid_linear(grid.flatten(2)).unflatten(2, self.grid)  # RM^c on the grid
        coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)  # bilinear chosen
        region_masks = torch.softmax(self.norm(self.refine(coarse)), dim=1)  # Eq. (3), over regions
        return region_masks, coarse


class RegionAwareAttention(nn.Module):
    """RA (§3.1): ``X + sum_j RM_j D_j`` with RM from the region mask generator, D the region dictionary."""

    def __init__(self, channels: int, regions: int, grid: tuple[int, int]):
        super().__init__()
        self.region_masks = RegionMaskGenerator(channels, regions, grid)
        # Learnable region dictionary (§3.1.2), row j = region j; N(0, 0.02) init (chosen), so the module
        # starts close to the identity.
        self.dictionary = nn.Parameter(torch.randn(regions, channels) * 0.02)

    def forward(self, x):
        region_masks, coarse = self.region_masks(x)
        # Eq. (4), Y_i = sum_j RM_ji D_j, written as a 1x1 convolution with weight D^T (c x n x 1 x 1).
        read_out = F.conv2d(region_masks, self.dictionary.t()[:, :, None, None])
        return x + read_out, region_masks, coarse  # residual "to ease the information flow" (plain sum chosen)


# ---------------------------------------------------------------------------------------------------------
# Local-global attention layer


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al.): global average, two 1x1 convs, a sigmoid gate per channel. The same
    layers and parameter names (``fc1``, ``fc2``) as timm's ``SEModule``, without importing timm's model zoo."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class SqueezeExciteBranch(nn.Module):
    """Local branch (§3.2, SE-Net [26]): a 3x3 conv for the local receptive field (chosen; the paper says only
    "SE-Net to capture the relevance of local information"), then squeeze-and-excitation, reduction 16."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        # c/16 hidden units as in SE-Net; at least 1 so tiny widths still build.
        self.se = SqueezeExcite(channels, hidden=max(1, channels // 16))

    def forward(self, x):
        return self.se(F.relu(self.conv(x)))


class SelectiveFusion(nn.Module):
    """SK-Net [27] selection between the two branches, in its standard form (reconstructed in ra.md §5):
    ``s = GAP(U_g + U_l)``, ``z = ReLU(BN(W_z s))``, per-channel softmax over two FC heads, weighted sum."""

    def __init__(self, channels: int, min_hidden: int = 32):
        super().__init__()
        hidden = max(channels // 16, min_hidden)  # d = max(c / r, L) with r = 16, L = 32 as in SK-Net
        self.squeeze = nn.Linear(channels, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.select_global = nn.Linear(hidden, channels)
        self.select_local = nn.Linear(hidden, channels)

    def branch_weights(self, u_global, u_local):
        """Per-channel selection weights (N x 2 x c), summing to one over the two branches."""
        if self.training and u_global.shape[0] == 1:
            raise InputSizeError("RA's SK fusion uses BatchNorm over the batch: training needs a batch of 2 or more")
        z = F.relu(self.norm(self.squeeze((u_global + u_local).mean((2, 3)))))
        return torch.softmax(torch.stack([self.select_global(z), self.select_local(z)], dim=1), dim=1)

    def forward(self, u_global, u_local):
        w = self.branch_weights(u_global, u_local)[..., None, None]
        return w[:, 0] * u_global + w[:, 1] * u_local


class LocalGlobalAttention(nn.Module):
    """LGA (§3.2): RA (global) and SE (local) on the same input, fused by SK selection. No extra residual
    around the layer (chosen; RA already has one)."""

    def __init__(self, channels: int, regions: int, grid: tuple[int, int]):
        super().__init__()
        self.global_branch = RegionAwareAttention(channels, regions, grid)
        self.local_branch = SqueezeExciteBranch(channels)
        self.fusion = SelectiveFusion(channels)

    def forward(self, x):
        u_global, region_masks, coarse = self.global_branch(x)
        return self.fusion(u_global, self.local_branch(x)), region_masks, coarse


# ---------------------------------------------------------------------------------------------------------
# Backbone (EdgeConnect / RT layout, chosen: the paper gives only the layer counts)


def _conv_block(cin, cout, kernel, stride, padding, reflect=False):
    pad = [nn.ReflectionPad2d(padding)] if reflect else []
    conv = nn.Conv2d(cin, cout, kernel, stride, 0 if reflect else padding)
    return nn.Sequential(*pad, conv, nn.InstanceNorm2d(cout), nn.ReLU(inplace=True))


def _up_block(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU(inplace=True))


class ResidualDilatedBlock(nn.Module):
    """``x + IN(Conv3x3(ReLU(IN(Conv3x3_dilated(x)))))`` with reflection padding (EdgeConnect form, chosen)."""

    def __init__(self, channels: int, dilation: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation), nn.Conv2d(channels, channels, 3, dilation=dilation),
            nn.InstanceNorm2d(channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x):
        return x + self.body(x)


class RAGenerator(nn.Module):
    """The RA generator. ``cnum``: width of the first layer (64); ``num_regions``: n (16; the paper's ablation
    tries 8, 16, 32); ``image_size``: the training size (int or (h, w)), which sizes the shared linear layers.

    Returns ``stages = (prediction,)`` and in ``aux`` the region masks of both LGA layers
    (``region_masks_lga1``: N x n x H x W, ``region_masks_lga2``: N x n x H/2 x W/2) plus images of them for
    sample grids (``region_map_*``: each pixel coloured by its most likely region, as in the paper's Fig. 4;
    ``coarse_region_map_lga1``: the same for RM^c, the linear layer's prediction before refinement).
    """

    def __init__(self, cnum: int = 64, num_regions: int = 16, image_size=256, blocks: int = 4):
        super().__init__()
        height, width = _pair(image_size)
        step = 2 * REDUCTION  # LGA2 sees stride-2 features, pooled by r
        if height % step or width % step or height < step or width < step:
            raise ZooError(f"RA image_size {height}x{width} must be a positive multiple of {step}")
        self.register_buffer("trained_size", torch.tensor([height, width]))  # recorded in checkpoints
        grid1 = (height // REDUCTION, width // REDUCTION)
        grid2 = (height // step, width // step)

        # "Embedded in the first two layers" read as: LGA after the activation of E1 and of E2 (chosen).
        self.enc1 = _conv_block(4, cnum, 7, 1, 3, reflect=True)
        self.lga1 = LocalGlobalAttention(cnum, num_regions, grid1)
        self.enc2 = _conv_block(cnum, 2 * cnum, 4, 2, 1)
        self.lga2 = LocalGlobalAttention(2 * cnum, num_regions, grid2)
        self.enc3 = _conv_block(2 * cnum, 4 * cnum, 4, 2, 1)
        self.middle = nn.Sequential(*[ResidualDilatedBlock(4 * cnum, dilation=2) for _ in range(blocks)])
        self.dec1 = _up_block(4 * cnum, 2 * cnum)
        self.dec2 = _up_block(2 * cnum, cnum)
        self.dec3 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(cnum, 3, 7))  # tanh in forward (chosen)
        self.apply(_init_weights)

    def forward(self, masked_image, mask) -> InpaintOutput:
        check_inputs(masked_image, mask, multiple=4)
        x = self.enc1(torch.cat([masked_image, mask], dim=1))
        x, rm1, coarse1 = self.lga1(x)
        x, rm2, _ = self.lga2(self.enc2(x))
        x = self.middle(self.enc3(x))
        prediction = torch.tanh(self.dec3(self.dec2(self.dec1(x))))
        size = masked_image.shape[-2:]
        aux = {
            "region_masks_lga1": rm1,
            "region_masks_lga2": rm2,
            "region_map_lga1": region_map_image(rm1, size),
            "region_map_lga2": region_map_image(rm2, size),
            "coarse_region_map_lga1": region_map_image(coarse1, size),
        }
        return InpaintOutput(stages=(prediction,), aux=aux)


def _init_weights(module):
    """N(0, 0.02) weights and zero biases for convolutions and linear layers (chosen; the RT / EdgeConnect
    code's "normal" init); normalisation layers keep PyTorch's (1, 0)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------------
# Region-mask pictures for sample grids


def region_palette(n: int) -> torch.Tensor:
    """n fixed, well separated colours (n x 3 in [-1, 1]): golden-ratio hues, alternating saturation/value."""
    golden = (math.sqrt(5) - 1) / 2
    colours = [colorsys.hsv_to_rgb((i * golden) % 1.0, 0.9 - 0.35 * (i % 2), 0.95 - 0.3 * ((i // 2) % 2))
               for i in range(n)]
    return torch.tensor(colours) * 2 - 1


@torch.no_grad()
def region_map_image(region_scores: torch.Tensor, size) -> torch.Tensor:
    """Colour each pixel by its most likely region: N x n x h x w -> N x 3 x H x W in [-1, 1]."""
    palette = region_palette(region_scores.shape[1]).to(region_scores.device, region_scores.dtype)
    rgb = palette[region_scores.argmax(1)].permute(0, 3, 1, 2)
    return F.interpolate(rgb, size=tuple(size), mode="nearest")



# ---------------------------------------------------------------------------------------------------------
# Export (zoo/export.py): one fixed size, the one the region grid's linear layer was built for.
EXPORT = dict(exporter="torchscript", dynamic=False,
              fixed_reason="RA's shared linear layer maps a region grid tied to the image size",
              weights_license="no released weights: the licence of whoever trained them")


# ---------------------------------------------------------------------------------------------------------
# Preset

PAPER = "Region-aware Attention for Image Inpainting, arXiv 2204.01004 (2022)"

RA_RECIPE = Recipe(
    # SN-PatchGAN on [image, mask] without the final LeakyReLU, fed the raw prediction (Eq. 8's symbols);
    # RaLS. Loss weights 1 / 0.2 / 250 / 0.2 are the RT [30] code's defaults (chosen; the paper gives none).
    # Perceptual layers relu1_1..relu5_1 [paper §3.4.2]; style layers from the RT code (chosen).
    discriminator="patchgan",
    discriminator_kwargs=dict(in_channels=4, cnum=64, final_activation=False),
    losses=(
        LossTerm("l1", 1.0),
        LossTerm("perceptual", 0.2, kwargs=dict(network="vgg16",
                                                layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))),
        LossTerm("style", 250.0, kwargs=dict(network="vgg16", layers=("relu2_2", "relu3_3", "relu4_3", "relu5_2"))),
    ),
    adversarial=AdversarialSpec(loss="rals", weight=0.2, fake="raw", d_steps=1),
    # Adam lr 1e-4 [paper §4.1]; betas (0.5, 0.999) and the same lr for D (chosen; RT code).
    optim_g=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    optim_d=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    batch_size=8,  # chosen; BatchNorm in the region mask generator and SK fusion needs batch > 1
    # The paper trains on Liu et al.'s irregular masks [22]: their seeded imitation (1-60 % holes, half touching
    # the border) by default; `--set masks=files --set mask_kwargs.folder=DIR` trains on the original files.
    masks="liu_irregular",
)


@register_model(
    "ra",
    num_params=24_175_695,
    recipe=RA_RECIPE,
    native_size=256,
    size_multiple=4,
    num_stages=1,
    paper=PAPER,
    width_arg="cnum",
    defaults=dict(cnum=64, num_regions=16),
    # The trainer's config sets image_size to the training size (the shared linear layers depend on it).
    size_arg="image_size",
    tiny=dict(cnum=8, image_size=64),
    tiny_size=64,
)
def ra(**kwargs):
    return RAGenerator(**kwargs)
