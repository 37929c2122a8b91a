"""DeepFill v1 (Yu et al., CVPR 2018) and v2 (Yu et al., ICCV 2019): coarse-to-fine with contextual attention.

Both versions share one layer table (the official TF layer names, so checkpoints map one to one):
a coarse encoder-decoder with dilated convolutions, then a refinement network with a dilated conv branch
and a contextual-attention branch merged into one decoder. v1 uses plain convolutions + ELU and clips its
output; v2 uses gated convolutions, a tanh output and feeds stage 2 only the 3-channel composite.

``cnum`` is the official width argument (48 for v2, 32 for v1): the output count of the first convolution,
which a gated layer splits into features and gates.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.utils import flow_to_image

from zoo.contract import InpaintOutput
from zoo.layers import ContextualAttention, GatedConv2d, UpConv2d
from zoo.layers.gated_conv import resize_nearest_aligned
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model

# (name, width as a multiple of cnum, kernel, stride, dilation); "up" = nearest x2 then conv.
COARSE_LAYERS = [
    ("conv1", 1, 5, 1, 1),
    ("conv2_downsample", 2, 3, 2, 1),
    ("conv3", 2, 3, 1, 1),
    ("conv4_downsample", 4, 3, 2, 1),
    ("conv5", 4, 3, 1, 1),
    ("conv6", 4, 3, 1, 1),
    ("conv7_atrous", 4, 3, 1, 2),
    ("conv8_atrous", 4, 3, 1, 4),
    ("conv9_atrous", 4, 3, 1, 8),
    ("conv10_atrous", 4, 3, 1, 16),
    ("conv11", 4, 3, 1, 1),
    ("conv12", 4, 3, 1, 1),
    ("conv13_upsample", 2, 3, "up", 1),
    ("conv14", 2, 3, 1, 1),
    ("conv15_upsample", 1, 3, "up", 1),
    ("conv16", 0.5, 3, 1, 1),
]
CONV_BRANCH = [
    ("xconv1", 1, 5, 1, 1),
    ("xconv2_downsample", 1, 3, 2, 1),
    ("xconv3", 2, 3, 1, 1),
    ("xconv4_downsample", 2, 3, 2, 1),
    ("xconv5", 4, 3, 1, 1),
    ("xconv6", 4, 3, 1, 1),
    ("xconv7_atrous", 4, 3, 1, 2),
    ("xconv8_atrous", 4, 3, 1, 4),
    ("xconv9_atrous", 4, 3, 1, 8),
    ("xconv10_atrous", 4, 3, 1, 16),
]
ATTENTION_BRANCH_IN = [
    ("pmconv1", 1, 5, 1, 1),
    ("pmconv2_downsample", 1, 3, 2, 1),
    ("pmconv3", 2, 3, 1, 1),
    ("pmconv4_downsample", 4, 3, 2, 1),
    ("pmconv5", 4, 3, 1, 1),
    ("pmconv6", 4, 3, 1, 1),  # ReLU, not ELU, in the official code: attention on non-negative features
]
ATTENTION_BRANCH_OUT = [("pmconv9", 4, 3, 1, 1), ("pmconv10", 4, 3, 1, 1)]
DECODER = [
    ("allconv11", 4, 3, 1, 1),
    ("allconv12", 4, 3, 1, 1),
    ("allconv13_upsample", 2, 3, "up", 1),
    ("allconv14", 2, 3, 1, 1),
    ("allconv15_upsample", 1, 3, "up", 1),
    ("allconv16", 0.5, 3, 1, 1),
]


class _Stack(nn.Module):
    """A named sequence of (gated) convolutions built from a layer table; returns the output width."""

    def __init__(self, table, in_channels, cnum, gated, tf_mode, relu_layers=()):
        super().__init__()
        self.names = []
        channels = in_channels
        for name, mult, kernel, stride, dilation in table:
            n = int(mult * cnum)  # the official conv output count; a gated layer keeps half of it
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


class DeepFill(nn.Module):
    def __init__(self, version: int = 2, cnum: int = 48, tf_mode: bool = False, attention_max_elements=2**25):
        super().__init__()
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        self.version = version
        gated = version == 2
        self.tf_mode = tf_mode  # TF SAME padding and align_corners resizes, for converted TF weights
        self.coarse = _Stack(COARSE_LAYERS, 5, cnum, gated, tf_mode)
        self.coarse.add_module(
            "conv17", GatedConv2d(self.coarse.out_channels, 3, 3, activation=None, tf_padding=tf_mode)
        )
        refine_in = 3 if version == 2 else 5
        self.conv_branch = _Stack(CONV_BRANCH, refine_in, cnum, gated, tf_mode)
        self.attention_in = _Stack(ATTENTION_BRANCH_IN, refine_in, cnum, gated, tf_mode, relu_layers={"pmconv6"})
        self.contextual_attention = ContextualAttention(
            rate=2, softmax_scale=10.0, fuse=True, align_corners=tf_mode, max_elements=attention_max_elements
        )
        self.attention_out = _Stack(
            ATTENTION_BRANCH_OUT, self.attention_in.out_channels, cnum, gated, tf_mode
        )
        merged = self.conv_branch.out_channels + self.attention_out.out_channels
        self.decoder = _Stack(DECODER, merged, cnum, gated, tf_mode)
        self.decoder.add_module(
            "allconv17", GatedConv2d(self.decoder.out_channels, 3, 3, activation=None, tf_padding=tf_mode)
        )

    def _to_rgb(self, x):
        return torch.tanh(x) if self.version == 2 else x.clamp(-1, 1)

    def forward(self, masked_image, mask) -> InpaintOutput:
        ones = torch.ones_like(mask)
        x = torch.cat([masked_image, ones, mask], dim=1)
        coarse = self._to_rgb(self.coarse.conv17(self.coarse(x)))

        merged = coarse * mask + masked_image * (1 - mask)
        x = merged if self.version == 2 else torch.cat([merged, ones, mask], dim=1)
        conv_features = self.conv_branch(x)
        attention_features = self.attention_in(x)
        size = attention_features.shape[-2:]
        if self.tf_mode:
            small_mask = resize_nearest_aligned(mask, *size)
        else:
            small_mask = nn.functional.interpolate(mask, size=size, mode="nearest")
        attention_features, offsets = self.contextual_attention(attention_features, attention_features, small_mask)
        attention_features = self.attention_out(attention_features)
        x = self.decoder(torch.cat([conv_features, attention_features], dim=1))
        fine = self._to_rgb(self.decoder.allconv17(x))
        return InpaintOutput(stages=(coarse, fine), aux={"attention": flow_image(offsets, masked_image.shape[-2:])})


@torch.no_grad()
def flow_image(offsets: torch.Tensor, size) -> torch.Tensor:
    """Colour-code attention offsets (N x 2 x h x w, (dy, dx)) as in the paper, as an image in [-1, 1]."""
    flow = offsets.flip(1).float()  # torchvision wants (dx, dy)
    rgb = flow_to_image(flow).float() / 127.5 - 1
    return nn.functional.interpolate(rgb, size=tuple(size), mode="nearest")


# ---------------------------------------------------------------------------------------------------------
# Presets

PAPER_V1 = "Yu et al., Generative Image Inpainting with Contextual Attention, CVPR 2018 (arXiv 1801.07892)"
PAPER_V2 = "Yu et al., Free-Form Image Inpainting with Gated Convolution, ICCV 2019 (arXiv 1806.03589)"

V2_RECIPE = Recipe(
    # SN-PatchGAN on [image, mask]; hinge loss; L1 over the whole image on both stages, 1:1.
    discriminator="patchgan",
    discriminator_kwargs=dict(in_channels=4, cnum=64, final_activation=True),
    losses=(LossTerm("l1", 1.0, stage=0), LossTerm("l1", 1.0, stage=1)),
    adversarial=AdversarialSpec(loss="hinge", weight=1.0, fake="composite", d_steps=1),
    optim_g=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    optim_d=OptimSpec(lr=1e-4, betas=(0.5, 0.999)),
    batch_size=16,
    masks="box_and_free_form",
)

V1_RECIPE = Recipe(
    # Global + local WGAN-GP critics (penalty on hole pixels), 5 critic steps per G step.
    # Spatially discounted L1 on the hole and L1 on the known pixels, coarse stage weighted 1.2 extra.
    discriminator="global_local",
    discriminator_kwargs=dict(in_channels=3, global_widths=(64, 128, 256, 256), local_widths=(64, 128, 256, 512),
                              local_fraction=0.5, fuse="sum"),
    losses=(
        LossTerm("discounted_l1", 1.2 * 1.2, stage=0, kwargs=dict(gamma=0.9)),
        LossTerm("discounted_l1", 1.2, stage=1, kwargs=dict(gamma=0.9)),
        LossTerm("l1", 1.2 * 1.2, stage=0, kwargs=dict(hole_weight=0.0, normalize="valid")),
        LossTerm("l1", 1.2, stage=1, kwargs=dict(hole_weight=0.0, normalize="valid")),
    ),
    adversarial=AdversarialSpec(loss="wgan_gp", weight=0.001, fake="composite", d_steps=5, gp_weight=10.0,
                                gp_hole_only=True),
    optim_g=OptimSpec(lr=1e-4, betas=(0.5, 0.9)),
    optim_d=OptimSpec(lr=1e-4, betas=(0.5, 0.9)),
    batch_size=16,
    masks="box",
    mask_kwargs=dict(max_size=128, max_delta=32),
)


@register_model(
    "deepfill_v2",
    recipe=V2_RECIPE,
    native_size=256,
    size_multiple=8,
    num_stages=2,
    paper=PAPER_V2,
    width_arg="cnum",
    defaults=dict(cnum=48),
    tiny=dict(cnum=8),
    checkpoints={
        "places2": "nipponjo/deepfillv2-pytorch states_pt_places2.pth / states_tf_places2.pth",
        "celebahq": "nipponjo/deepfillv2-pytorch states_pt_celebahq.pth / states_tf_celebahq.pth",
    },
)
def deepfill_v2(**kwargs):
    return DeepFill(version=2, **kwargs)


@register_model(
    "deepfill_v1",
    recipe=V1_RECIPE,
    native_size=256,
    size_multiple=8,
    num_stages=2,
    paper=PAPER_V1,
    width_arg="cnum",
    defaults=dict(cnum=32),
    tiny=dict(cnum=8),
    checkpoints={"imagenet": "daa233/generative-inpainting-pytorch gen_00430000.pt"},
)
def deepfill_v1(**kwargs):
    return DeepFill(version=1, **kwargs)
