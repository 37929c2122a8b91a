"""HINT (Chen, Atapour-Abarghouei, Shum, IEEE TMM 2024, arXiv 2402.14185): a Restormer-style transformer U-Net.

Four levels (``dim`` 48, blocks [4, 6, 6, 8], heads [1, 2, 4, 8]) with three changes to Restormer:

* MPD, mask-aware pixel-shuffle down-sampling: every pixel-unshuffled feature channel is paired with the
  unshuffled mask of the same sub-pixel position and a grouped 3x3 conv mixes each pair;
* SCAL, spatially-activated channel attention: Restormer's transposed (channel) attention, gated element-wise
  by a ReLU spatial branch computed at half resolution;
* the Sandwich block: FFN -> SCAL -> FFN, each pre-norm and residual.

Module names follow the official ``src/networks.py`` so that the released ``InpaintingModel_gen.pth`` loads
strictly. The official convention ([0, 1] images, holes filled with white, masks at 1/2 and 1/4 for MPD,
``(tanh + 1) / 2`` output) lives inside ``HINT.forward`` only; outside it is the zoo's ([-1, 1], holes zeroed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.contract import InpaintOutput, check_inputs
from zoo.errors import CheckpointError
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model
from zoo.weights_table import WeightEntry, weight_table

# H and W must be multiples of 16: three pixel-unshuffles (8) and SCAL's 2x2 average pool at the 1/8 level.
SIZE_MULTIPLE = 16


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel (official "WithBias" LayerNorm: biased variance, eps 1e-5).

    The ``body`` wrapper only reproduces the official state-dict names (``norm1.body.weight``). We use PyTorch's
    fused LayerNorm rather than the official hand-written ``(x - mean) / sqrt(var + eps)``: the same function, but
    not the same float rounding. Pixels with near-zero channel variance (dark areas after the bias-free gated
    embedding) amplify that rounding: on random weights at 256 x 256 the outputs differ by up to ~1e-4 (bit-exact
    with the hand-written form; see tools/hint_parity.py), well under one 8-bit grey level.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x):
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    """Restormer's gated-dconv feed-forward network (GDFN), bias-free."""

    def __init__(self, dim: int, expansion: float):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x):
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class SCAL(nn.Module):
    """Spatially-activated channel attention (official class ``Attention``).

    Channel branch: per head, a (C/heads) x (C/heads) attention between L2-normalised query and key channels,
    scaled by a learnable per-head temperature; its cost is linear in H*W. Spatial branch: average-pool by 2,
    two (conv 3x3 + LayerNorm + ReLU), nearest up-sampling by 2. The spatial map multiplies the attention
    output directly (no sigmoid), then a 1x1 projection.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)
        # indices 0..5 are the official state-dict names (conv.0, conv.1.body, conv.3, conv.4.body)
        self.conv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=True),
            ChannelLayerNorm(dim),
            nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1, bias=True),
            ChannelLayerNorm(dim),
            nn.ReLU(),
        )

    def channel_attention(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).reshape(n, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return (attn @ v).reshape(n, c, h, w)

    def spatial_activation(self, x):
        y = self.conv(F.avg_pool2d(x, 2))
        return F.interpolate(y, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.project_out(self.spatial_activation(x) * self.channel_attention(x))


class SandwichBlock(nn.Module):
    """FFN -> SCAL -> FFN, each sub-layer pre-norm with its own LayerNorm and a residual connection.

    With ``grad_checkpointing`` a training-mode forward pass that records gradients keeps only each sub-layer's
    input and recomputes its inside during the backward pass (the full-resolution FFN holds ~2.66 x 2 x C
    channels, the bulk of HINT's training memory); the gradients are the same; eval mode (inference, export)
    never checkpoints.
    """

    def __init__(self, dim: int, num_heads: int, expansion: float, grad_checkpointing: bool = False):
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        self.norm1_1 = ChannelLayerNorm(dim)
        self.ffn1 = FeedForward(dim, expansion)
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = SCAL(dim, num_heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = FeedForward(dim, expansion)

    def forward(self, x):
        for norm, layer in ((self.norm1_1, self.ffn1), (self.norm1, self.attn), (self.norm2, self.ffn)):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = x + checkpoint(_pre_norm, norm, layer, x, use_reentrant=False)
            else:
                x = x + layer(norm(x))
        return x


def _pre_norm(norm, layer, x):
    return layer(norm(x))


class GatedEmbedding(nn.Module):
    """Bias-free 3x3 conv to 2 x dim channels, then ``gelu(a) * b`` (official ``GatedEmb``)."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.gproj1 = nn.Conv2d(in_channels, dim * 2, 3, padding=1, bias=False)

    def forward(self, x):
        a, b = self.gproj1(x).chunk(2, dim=1)
        return F.gelu(a) * b


def interleave_with_mask(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MPD's pairing: ``t[2i] = unshuffle(features)[i]``, ``t[2i + 1] = unshuffle(mask)[i mod 4]``.

    With PyTorch's pixel-unshuffle order, channel ``i = 4c + s`` holds sub-pixel position ``s`` of channel ``c``,
    so ``i mod 4 = s`` pairs every feature channel with the mask of the same sub-pixel position.
    ``features`` is already unshuffled (N x 4C' x h x w); ``mask`` is N x 1 x 2h x 2w.
    """
    n, c, h, w = features.shape
    unshuffled_mask = F.pixel_unshuffle(mask, 2).to(features.dtype)  # N x 4 x h x w, channel = sub-pixel position
    # view channel i = 4c + s as (c, s); the mask broadcasts over c without being copied C/4 times
    by_position = features.view(n, c // 4, 4, h, w)
    mask_by_position = unshuffled_mask.unsqueeze(1).expand(n, c // 4, 4, h, w)
    return torch.stack([by_position, mask_by_position], dim=3).view(n, 2 * c, h, w)


class MaskAwareDownsample(nn.Module):
    """MPD (official class ``Downsample``): C channels at H -> 2C channels at H/2, guided by the mask at H."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))
        # one group per (feature, matching mask) pair: weight 2C x 2 x 3 x 3
        self.proj = nn.Conv2d(dim * 4, dim * 2, 3, padding=1, groups=dim * 2, bias=False)

    def forward(self, x, mask):
        return self.proj(interleave_with_mask(self.body(x), mask))


class Upsample(nn.Module):
    """Bias-free 3x3 conv to 2C, pixel-shuffle by 2: C channels at H -> C/2 at 2H."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class HINT(nn.Module):
    """The HINT generator. Called as ``G(image * (1 - mask), mask)`` in the zoo convention.

    ``grad_checkpointing`` (on in the training recipe) recomputes every Sandwich block's sub-layers in the
    backward pass: forward + backward at 256 px, batch 1, peaks at 3.5 GiB instead of 15.1 GiB."""

    def __init__(self, dim: int = 48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), ffn_expansion_factor: float = 2.66,
                 grad_checkpointing: bool = False):
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads need one entry per level (4)")
        widths = [dim, dim * 2, dim * 4, dim * 8]
        if dim % 2 or any(w % h for w, h in zip(widths, heads)):
            raise ValueError(f"dim must be even and each level's width {widths} divisible by its heads {heads}")

        def level(width, n, num_heads):
            return nn.Sequential(*[SandwichBlock(width, num_heads, ffn_expansion_factor, grad_checkpointing)
                                   for _ in range(n)])

        self.patch_embed = GatedEmbedding(4, dim)
        self.encoder_level1 = level(widths[0], num_blocks[0], heads[0])
        self.down1_2 = MaskAwareDownsample(widths[0])
        self.encoder_level2 = level(widths[1], num_blocks[1], heads[1])
        self.down2_3 = MaskAwareDownsample(widths[1])
        self.encoder_level3 = level(widths[2], num_blocks[2], heads[2])
        self.down3_4 = MaskAwareDownsample(widths[2])
        self.latent = level(widths[3], num_blocks[3], heads[3])

        self.up4_3 = Upsample(widths[3])
        self.reduce_chan_level3 = nn.Conv2d(widths[3], widths[2], 1, bias=False)
        self.decoder_level3 = level(widths[2], num_blocks[2], heads[2])
        self.up3_2 = Upsample(widths[2])
        self.reduce_chan_level2 = nn.Conv2d(widths[2], widths[1], 1, bias=False)
        self.decoder_level2 = level(widths[1], num_blocks[1], heads[1])
        self.up2_1 = Upsample(widths[1])
        # no channel reduction at level 1: the decoder runs at 2 x dim
        self.decoder_level1 = level(widths[1], num_blocks[0], heads[0])
        self.output = nn.Sequential(nn.Conv2d(widths[1], 3, 3, padding=1, bias=False))

    def forward_official(self, image_filled, mask):
        """The official network on its own convention: ``image_filled`` in [0, 1] with holes set to 1, output in
        [0, 1]. Masks at 1/2 and 1/4 are nearest resizes, as the official ``InpaintingModel.forward`` makes them
        (its 1/8 mask is passed to an up-sampler that ignores it)."""
        h, w = mask.shape[-2:]
        mask_half = F.interpolate(mask, size=(h // 2, w // 2), mode="nearest")
        mask_quarter = F.interpolate(mask, size=(h // 4, w // 4), mode="nearest")

        enc1 = self.encoder_level1(self.patch_embed(torch.cat([image_filled, mask], dim=1)))
        enc2 = self.encoder_level2(self.down1_2(enc1, mask))
        enc3 = self.encoder_level3(self.down2_3(enc2, mask_half))
        latent = self.latent(self.down3_4(enc3, mask_quarter))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], dim=1))
        return (torch.tanh(self.output(dec1)) + 1) / 2

    def forward(self, masked_image, mask) -> InpaintOutput:
        check_inputs(masked_image, mask, multiple=SIZE_MULTIPLE)
        # zoo -> HINT: [-1, 1] -> [0, 1], holes filled white (the zeroed hole pixels are overwritten)
        image_filled = (masked_image + 1) / 2 * (1 - mask) + mask
        out01 = self.forward_official(image_filled, mask)
        return InpaintOutput(stages=(out01 * 2 - 1,))


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints

def convert_official_checkpoint(obj, path, model: nn.Module) -> dict:
    """Map the official ``InpaintingModel_gen.pth`` (``{'iteration', 'generator'}``), or a bare generator state
    dict, onto ``HINT``; ``module.`` prefixes (``nn.DataParallel`` runs) are stripped. The names are the
    official ones, so the mapping only unwraps; ``zoo.hub`` then checks every key and shape strictly (the
    official loader uses ``strict=False``, which silently loads nothing on a prefix mismatch)."""
    if obj is None:
        raise CheckpointError(f"{path} is corrupt or not a torch file (HINT expects InpaintingModel_gen.pth)")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a HINT generator checkpoint")
    if "generator" in obj:
        state = obj["generator"]
    elif "discriminator" in obj:
        raise CheckpointError(f"{path} is a HINT discriminator checkpoint; load InpaintingModel_gen.pth")
    else:
        state = obj
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        bad = [k for k, v in state.items() if not torch.is_tensor(v)][:3] if isinstance(state, dict) else []
        raise CheckpointError(f"{path} is not a HINT generator state dict (non-tensor entries {bad}; "
                              f"top-level keys {sorted(obj)[:5]})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def convert_discriminator(obj, path, D: nn.Module) -> dict | None:
    """HINT's ``InpaintingModel_dis.pth`` (``{'discriminator': state}``), given itself or found beside
    ``InpaintingModel_gen.pth`` (the official checkpoint folder holds both). The duplicate ``features.*``
    entries (``self.conv1 = self.features = ...``) and ``module.`` prefixes are dropped. None without one."""
    from pathlib import Path

    if not (isinstance(obj, dict) and "discriminator" in obj):
        path = Path(path) if path is not None else None
        if path is None or "_gen" not in path.name or not path.with_name(path.name.replace("_gen", "_dis")).is_file():
            return None
        sibling = path.with_name(path.name.replace("_gen", "_dis"))
        try:
            obj = torch.load(sibling, map_location="cpu", weights_only=True)
        except Exception:
            raise CheckpointError(f"{sibling} is corrupt or not a torch file") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("discriminator"), dict):
            raise CheckpointError(f"{sibling} is not a HINT discriminator checkpoint (no 'discriminator' state)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj["discriminator"].items()}
    return {k: v for k, v in state.items() if not k.startswith("features.")}


# ---------------------------------------------------------------------------------------------------------
# Export (zoo/export.py): convolutions and channel attention only, traced at any size.
EXPORT = dict(exporter="torchscript", dynamic=True, min_size=SIZE_MULTIPLE,
              weights_license="MIT (ChrisChen1023/HINT code and released weights)")


# ---------------------------------------------------------------------------------------------------------
# Preset

PAPER = ("Chen, Atapour-Abarghouei, Shum, HINT: High-quality INpainting Transformer with Mask-Aware Encoding "
         "and Enhanced Attention, IEEE TMM 2024 (arXiv 2402.14185)")

VGG19_PERCEPTUAL = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG19_STYLE = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")

HINT_RECIPE = Recipe(
    # EdgeConnect SN-PatchGAN with a sigmoid output, on RGB only, seeing the raw (non-composited) output.
    discriminator="patchgan_edgeconnect",
    discriminator_kwargs=dict(in_channels=3, use_sigmoid=True),
    losses=(
        # The official L1 is mean |out - gt| on [0, 1] images divided by the hole ratio, weight 1. On our
        # [-1, 1] images the same difference is twice as large, so weight 0.5 gives the official term exactly.
        LossTerm("l1", 0.5, kwargs=dict(normalize="hole_ratio")),
        # VGG19 on [0, 1] inputs without ImageNet normalisation, as in the official (EdgeConnect) loss.
        LossTerm("perceptual", 0.1, kwargs=dict(network="vgg19", normalize="none", layers=VGG19_PERCEPTUAL)),
        # Gram-matrix L1 on out * mask vs gt * mask.
        LossTerm("style", 250.0, kwargs=dict(network="vgg19", normalize="none", masked=True, layers=VGG19_STYLE)),
    ),
    # LSGAN on the sigmoid output, G weight 0.01. Not reproduced (the shared trainer has no such branch): the
    # official EdgeConnect update order backpropagates the generator loss before D's step, so D's gradient also
    # holds the 0.01-weighted generator adversarial gradient, and G's adversarial term sees D before its update.
    adversarial=AdversarialSpec(loss="lsgan", weight=0.01, fake="raw", d_steps=1),
    optim_g=OptimSpec(lr=1e-4, betas=(0.9, 0.999)),
    optim_d=OptimSpec(lr=1e-5, betas=(0.9, 0.999)),  # D2G_LR 0.1
    batch_size=4,
    # The official set is the external NVIDIA irregular masks (Liu et al.): their seeded imitation by default;
    # point ``masks=files`` / ``mask_kwargs.folder`` at the original files to follow the paper exactly.
    masks="liu_irregular",
    # Activation checkpointing: fwd+bwd at 256 px, batch 1, 15.1 -> 3.5 GiB peak (tools/bench.py --fwd-bwd 1).
    train_model_kwargs=dict(grad_checkpointing=True),
)

# Released weights: one Google Drive sub-folder per dataset (README); no per-file ids, sizes or hashes.
_RELEASE = dict(contents=("G",), companions=("InpaintingModel_dis.pth",), format="hint_official", resolution=256,
                license="MIT (the code's licence; no separate licence is stated for the weights)",
                origin="https://github.com/ChrisChen1023/HINT (README: Google Drive folder "
                       "https://drive.google.com/drive/folders/1Iy3BNkcKY5NOOG53YG3DPQzDnZLgW0FN)",
                paper=PAPER, notes="manual download of the dataset's sub-folder; put InpaintingModel_dis.pth "
                "beside it to fine-tune with the released discriminator")
HINT_WEIGHTS = weight_table(
    WeightEntry("places2", "InpaintingModel_gen.pth", data="Places2", **_RELEASE),
    WeightEntry("celebahq", "InpaintingModel_gen.pth", data="CelebA-HQ", **_RELEASE),
    WeightEntry("celeba", "InpaintingModel_gen.pth", data="CelebA", **_RELEASE),
    WeightEntry("dunhuang", "InpaintingModel_gen.pth", data="Dunhuang", **_RELEASE),
)


@register_model(
    "hint",
    num_params=72_265_248,
    recipe=HINT_RECIPE,
    native_size=256,
    size_multiple=SIZE_MULTIPLE,
    num_stages=1,
    paper=PAPER,
    width_arg="dim",
    defaults=dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8)),
    tiny=dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 2, 4, 8)),
    tiny_size=64,
    checkpoints=HINT_WEIGHTS,
    convert_checkpoint=convert_official_checkpoint,
    convert_discriminator=convert_discriminator,
)
def hint(**kwargs):
    return HINT(**kwargs)
