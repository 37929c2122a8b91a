"""DeepFill v1 (Yu et al., CVPR 2018) and v2 (Yu et al., ICCV 2019): coarse-to-fine with contextual attention.

Both versions share one layer table (the official TF layer names, so checkpoints map one to one):
a coarse encoder-decoder with dilated convolutions, then a refinement network with a dilated conv branch
and a contextual-attention branch merged into one decoder. v1 uses plain convolutions + ELU and clips its
output; v2 uses gated convolutions, a tanh output and feeds stage 2 only the 3-channel composite.

``cnum`` is the official width argument (48 for v2, 32 for v1): the output count of the first convolution,
which a gated layer splits into features and gates.

Official weights load with ``zoo.load(name, checkpoint=PATH)`` (and ``zoo train --init-from PATH``): the
presets' converters below read nipponjo's DeepFill v2 files and daa233's DeepFill v1 files, reorder
BGR-trained layers so that callers always pass RGB, and switch the model to the padding and resizing the
weights were trained with.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.contract import InpaintOutput
from zoo.errors import CheckpointError
from zoo.layers import ContextualAttention, ConvStack, GatedConv2d, UpConv2d
from zoo.layers.contextual_attention import PATCH_NORMS
from zoo.layers.export_safe import is_exporting
from zoo.layers.gated_conv import resize_nearest_aligned
from zoo.registry import AdversarialSpec, LossTerm, OptimSpec, Recipe, register_model
from zoo.weights_table import CC_BY_NC, GDriveFile, URLFile, WeightEntry, weight_table

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


class DeepFill(nn.Module):
    """DeepFill v1 / v2 generator. ``G(image * (1 - mask), mask)`` -> stages (coarse, fine), RGB in [-1, 1].

    Behaviour switches (no effect on parameters):

    * ``tf_mode``: TF SAME padding (asymmetric for stride 2) and TF1 align_corners nearest resizes, which
      weights converted from the TF release need. Off: symmetric padding and PyTorch resizes (nipponjo's
      ``networks.py``, daa233's port, and our own training).
    * ``attention_fuse``: the diagonal score fusion of contextual attention (official: on; nipponjo's
      ``networks_tf.py`` turns it off).
    * ``mask_resize``: how the hole mask reaches contextual attention's matching resolution (1/8 of the
      input): ``"stepwise"`` = to the attention features' size, then by the attention rate, as the official
      graph; ``"direct"`` = from full resolution in one resize, as nipponjo's and daa233's ports. The two
      differ only with ``tf_mode`` (align_corners resizes) or sizes that are not multiples of 8.
    * ``patch_norm``: ``"clamp"`` (official) or ``"additive"`` (daa233's v1 port), see ContextualAttention.
    * ``attention_flow``: put the colour-coded attention offsets in ``aux["attention"]`` (for sample grids and
      people) in eval mode; a training-mode pass never makes them (nothing there reads them), and with
      ``attention_flow=False`` no pass does (the official ports' ``return_flow=False``).

    ``tf_mode`` and ``patch_norm`` belong to the weights, so they are saved in the state dict (two flag
    buffers) and set by ``load_state_dict``: a converted TF checkpoint, or a zoo checkpoint fine-tuned from
    one, always runs the way its weights were trained. The attention options are settings of the model.
    """

    def __init__(
        self,
        version: int = 2,
        cnum: int = 48,
        tf_mode: bool = False,
        attention_fuse: bool = True,
        mask_resize: str = "stepwise",
        patch_norm: str = "clamp",
        attention_max_elements: int = 2**26,
        attention_flow: bool = True,
    ):
        super().__init__()
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        if mask_resize not in ("stepwise", "direct"):
            raise ValueError("mask_resize must be 'stepwise' or 'direct'")
        self.version, self.cnum = version, cnum
        gated = version == 2
        self.coarse = ConvStack(COARSE_LAYERS, 5, cnum, gated, tf_mode)
        self.coarse.add_module(
            "conv17", GatedConv2d(self.coarse.out_channels, 3, 3, activation=None, tf_padding=tf_mode)
        )
        refine_in = 3 if version == 2 else 5
        self.conv_branch = ConvStack(CONV_BRANCH, refine_in, cnum, gated, tf_mode)
        self.attention_in = ConvStack(ATTENTION_BRANCH_IN, refine_in, cnum, gated, tf_mode, relu_layers={"pmconv6"})
        self.contextual_attention = ContextualAttention(
            rate=2, softmax_scale=10.0, fuse=attention_fuse, max_elements=attention_max_elements
        )
        self.attention_out = ConvStack(
            ATTENTION_BRANCH_OUT, self.attention_in.out_channels, cnum, gated, tf_mode
        )
        merged = self.conv_branch.out_channels + self.attention_out.out_channels
        self.decoder = ConvStack(DECODER, merged, cnum, gated, tf_mode)
        self.decoder.add_module(
            "allconv17", GatedConv2d(self.decoder.out_channels, 3, 3, activation=None, tf_padding=tf_mode)
        )
        self.mask_resize = mask_resize
        self.attention_flow = attention_flow
        self.register_buffer("flag_tf_mode", torch.tensor(False))
        self.register_buffer("flag_additive_patch_norm", torch.tensor(False))
        self.tf_mode, self.patch_norm = tf_mode, patch_norm
        self.configure(tf_mode=tf_mode, patch_norm=patch_norm)

    def configure(self, tf_mode: bool | None = None, patch_norm: str | None = None) -> DeepFill:
        """Switch the weight-dependent behaviour (what a converter of official weights sets)."""
        if patch_norm is not None and patch_norm not in PATCH_NORMS:
            raise ValueError(f"patch_norm must be one of {PATCH_NORMS}")
        # Python copies of the flag buffers, so that forward never reads a tensor (no device sync).
        self.tf_mode = bool(tf_mode) if tf_mode is not None else self.tf_mode
        self.patch_norm = patch_norm or self.patch_norm
        self.flag_tf_mode.fill_(self.tf_mode)
        self.flag_additive_patch_norm.fill_(self.patch_norm == "additive")
        for module in self.modules():
            if isinstance(module, GatedConv2d):
                module.set_tf_padding(self.tf_mode)
            elif isinstance(module, UpConv2d):
                # nearest x2 up-sampling picks the same pixels with or without align_corners; set for clarity
                module.align_corners = self.tf_mode
        self.contextual_attention.align_corners = self.tf_mode
        self.contextual_attention.patch_norm = self.patch_norm
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # behave as the loaded weights need
        tf_mode, additive = state_dict.get(prefix + "flag_tf_mode"), state_dict.get(prefix + "flag_additive_patch_norm")
        self.configure(tf_mode=None if tf_mode is None else bool(tf_mode),
                       patch_norm=None if additive is None else ("additive" if bool(additive) else "clamp"))

    @property
    def attention_fuse(self) -> bool:
        return self.contextual_attention.fuse

    def _to_rgb(self, x):
        return torch.tanh(x) if self.version == 2 else x.clamp(-1, 1)

    def _attention_mask(self, mask, feature_size):
        """The hole mask at the attention features' size ("stepwise") or already at half of it ("direct")."""
        h, w = feature_size
        if self.mask_resize == "direct":
            h, w = h // self.contextual_attention.rate, w // self.contextual_attention.rate
        if self.tf_mode:
            return resize_nearest_aligned(mask, h, w)
        return nn.functional.interpolate(mask, size=(h, w), mode="nearest")

    def forward(self, masked_image, mask) -> InpaintOutput:
        ones = torch.ones_like(mask)
        x = torch.cat([masked_image, ones, mask], dim=1)
        coarse = self._to_rgb(self.coarse.conv17(self.coarse(x)))

        merged = coarse * mask + masked_image * (1 - mask)
        x = merged if self.version == 2 else torch.cat([merged, ones, mask], dim=1)
        conv_features = self.conv_branch(x)
        attention_features = self.attention_in(x)
        small_mask = self._attention_mask(mask, attention_features.shape[-2:])
        attention_features, offsets = self.contextual_attention(attention_features, attention_features, small_mask)
        attention_features = self.attention_out(attention_features)
        x = self.decoder(torch.cat([conv_features, attention_features], dim=1))
        fine = self._to_rgb(self.decoder.allconv17(x))
        # The colour-coded offsets are for people (sample grids); an exported graph returns only the fill.
        show_flow = self.attention_flow and not self.training and not is_exporting()
        aux = {"attention": flow_image(offsets, masked_image.shape[-2:])} if show_flow else {}
        return InpaintOutput(stages=(coarse, fine), aux=aux)


@torch.no_grad()
def flow_image(offsets: torch.Tensor, size) -> torch.Tensor:
    """Colour-code attention offsets (N x 2 x h x w, (dy, dx)) as in the paper, as an image in [-1, 1]."""
    from torchvision.utils import flow_to_image  # here: importing torchvision costs seconds and ~100 MB

    flow = offsets.flip(1).float()  # torchvision wants (dx, dy)
    rgb = flow_to_image(flow).float() / 127.5 - 1
    return nn.functional.interpolate(rgb, size=tuple(size), mode="nearest")


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints
#
# Our keys are "<group>.<official TF layer name>.conv[.conv].<weight|bias>", so every official layout maps by
# layer name. DeepFill v2: nipponjo/deepfillv2-pytorch, a dict whose "G" is the generator state dict, in the
# layout of networks_tf.py (TF layer names, the TF release converted: BGR, TF padding) or of networks.py
# ("stage1."/"stage2." names, fine-tuned from those in nipponjo's RGB pipeline with PyTorch padding).
# DeepFill v1: daa233/generative-inpainting-pytorch, "gen_*.pt" (a plain state dict, trained in PyTorch on
# RGB) or "torch_model.p" (the TF v1 release converted, keys prefixed "netG.", BGR).

# networks.py module of each official layer (reference/deepfill.md, appendix A)
_NIPPONJO_PT_NAMES = {
    "conv1": "stage1.conv1",
    "conv2_downsample": "stage1.down_block1.conv1_downsample",
    "conv3": "stage1.down_block1.conv2",
    "conv4_downsample": "stage1.down_block2.conv1_downsample",
    "conv5": "stage1.down_block2.conv2",
    **{f"conv{i}{'_atrous' if 7 <= i <= 10 else ''}": f"stage1.conv_bn{i - 5}" for i in range(6, 13)},
    "conv13_upsample": "stage1.up_block1.conv1_upsample",
    "conv14": "stage1.up_block1.conv2",
    "conv15_upsample": "stage1.up_block2.conv1_upsample",
    "conv16": "stage1.up_block2.conv2",
    "conv17": "stage1.conv_to_rgb",
    "xconv1": "stage2.conv_conv1",
    "xconv2_downsample": "stage2.conv_down_block1.conv1_downsample",
    "xconv3": "stage2.conv_down_block1.conv2",
    "xconv4_downsample": "stage2.conv_down_block2.conv1_downsample",
    "xconv5": "stage2.conv_down_block2.conv2",
    **{f"xconv{i}{'_atrous' if i >= 7 else ''}": f"stage2.conv_conv_bn{i - 5}" for i in range(6, 11)},
    "pmconv1": "stage2.ca_conv1",
    "pmconv2_downsample": "stage2.ca_down_block1.conv1_downsample",
    "pmconv3": "stage2.ca_down_block1.conv2",
    "pmconv4_downsample": "stage2.ca_down_block2.conv1_downsample",
    "pmconv5": "stage2.ca_down_block2.conv2",
    "pmconv6": "stage2.ca_conv_bn1",
    "pmconv9": "stage2.ca_conv_bn4",
    "pmconv10": "stage2.ca_conv_bn5",
    "allconv11": "stage2.conv_bn6",
    "allconv12": "stage2.conv_bn7",
    "allconv13_upsample": "stage2.up_block1.conv1_upsample",
    "allconv14": "stage2.up_block1.conv2",
    "allconv15_upsample": "stage2.up_block2.conv1_upsample",
    "allconv16": "stage2.up_block2.conv2",
    "allconv17": "stage2.conv_to_rgb",
}
# Keys of the official layouts that carry nothing we need.
_IGNORED_KEYS = {"stage2.contextual_attention.fuse_weight"}  # the constant 3x3 identity of the fusion
# Layers that see the 3 image channels first, and the RGB heads (BGR <-> RGB flips).
_IMAGE_INPUT_LAYERS = ("conv1", "xconv1", "pmconv1")
_IMAGE_OUTPUT_LAYERS = ("conv17", "allconv17")
_FLAGS = ("flag_tf_mode", "flag_additive_patch_norm")
_LAYOUT_NAMES = {"nipponjo_tf": "nipponjo networks_tf.py", "nipponjo_pt": "nipponjo networks.py",
                 "daa233": "daa233 generator"}


def _official_key(our_key: str, layout: str) -> str:
    group, layer, rest = our_key.split(".", 2)  # e.g. coarse, conv13_upsample, conv.conv.weight
    if layout == "nipponjo_tf":
        return f"{layer}.{rest}"
    if layout == "nipponjo_pt":
        return f"{_NIPPONJO_PT_NAMES[layer]}.{rest}"
    # daa233: "coarse_generator." / "fine_generator.", the fine conv branch without its "x", up-sampling
    # convs without "_upsample", no nested conv in the up-sampling layers.
    stage = "coarse_generator" if group == "coarse" else "fine_generator"
    name = layer.replace("_upsample", "")
    if group == "conv_branch":
        name = name[1:]
    return f"{stage}.{name}.conv.{rest.rsplit('.', 1)[-1]}"


def _bgr_to_rgb(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Reorder a BGR-trained layer so that the model takes and returns RGB (an exact permutation)."""
    layer = key.split(".")[1]
    if layer in _IMAGE_INPUT_LAYERS and key.endswith("weight"):
        tensor = torch.cat([tensor[:, :3].flip(1), tensor[:, 3:]], dim=1)
    if layer in _IMAGE_OUTPUT_LAYERS:
        tensor = tensor.flip(0)
    return tensor


def _generator_dict(obj, path, what):
    if isinstance(obj, dict) and isinstance(obj.get("G"), dict):
        obj = obj["G"]  # nipponjo's files and training snapshots keep the generator under "G"
    if obj is None:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a {what} checkpoint (a {type(obj).__name__}, not a state dict)")
    return obj


def _map_official(state: dict, model: nn.Module, layout: str, path, bgr: bool, prefix: str = "",
                  ignore=lambda key: False, **flags) -> dict:
    """Our state dict from an official one: every tensor by name, shapes checked, channels flipped if BGR."""
    expected = {k: v for k, v in model.state_dict().items() if k not in _FLAGS}
    converted, missing, wrong, used = {}, [], [], set()
    for key, target in expected.items():
        source = prefix + _official_key(key, layout)
        if source not in state:
            missing.append(source)
            continue
        used.add(source)
        tensor = state[source]
        if not torch.is_tensor(tensor) or tuple(tensor.shape) != tuple(target.shape):
            shape = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            wrong.append(f"{source} {shape} (expected {tuple(target.shape)})")
            continue
        converted[key] = _bgr_to_rgb(key, tensor) if bgr else tensor
    unexpected = [k for k in state if k not in used and k not in _IGNORED_KEYS and not ignore(k)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if wrong:
        problems.append(f"misshaped {wrong[0]}" + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if problems:
        raise CheckpointError(f"{path} ({_LAYOUT_NAMES[layout]} layout) does not fit DeepFill "
                              f"v{model.version} with cnum={model.cnum}: " + "; ".join(problems))
    converted["flag_tf_mode"] = torch.tensor(flags["tf_mode"])
    converted["flag_additive_patch_norm"] = torch.tensor(flags.get("patch_norm", "clamp") == "additive")
    return converted


def _looks_like_ours(state: dict) -> bool:
    return any(k.split(".", 1)[0] in ("coarse", "conv_branch", "attention_in", "decoder") for k in state)


def convert_deepfill_v2(obj, path, model: nn.Module) -> dict:
    """nipponjo's states_tf_*.pth (TF release: BGR, TF padding) or states_pt_*.pth (RGB, PyTorch padding)."""
    state = _generator_dict(obj, path, "DeepFill v2")
    if _looks_like_ours(state):
        return state  # our own layout with a problem: the loader names the keys that do not fit
    if any(k.startswith(("stage1.", "stage2.")) for k in state):
        # fine-tuned in nipponjo's PIL (RGB) pipeline with symmetric padding: no flip, no TF mode
        return _map_official(state, model, "nipponjo_pt", path, bgr=False, tf_mode=False)
    if "conv1.conv.weight" in state or "allconv17.conv.weight" in state:
        # the TF release: trained on cv2 (BGR) images with TF padding and align_corners resizes
        return _map_official(state, model, "nipponjo_tf", path, bgr=True, tf_mode=True)
    raise CheckpointError(f"{path} is not a DeepFill v2 checkpoint (ours, or nipponjo's networks.py / "
                          f"networks_tf.py layout); its first keys are {list(state)[:3]}")


def convert_deepfill_v1(obj, path, model: nn.Module) -> dict:
    """daa233's gen_*.pt (trained in PyTorch on RGB) or torch_model.p (the TF v1 release, BGR)."""
    state = _generator_dict(obj, path, "DeepFill v1")
    if _looks_like_ours(state):
        return state
    if any(k.startswith("netG.coarse_generator.") for k in state):
        # torch_model.p: a whole daa233 trainer state; the TF weights need TF padding and the official norm
        return _map_official(state, model, "daa233", path, bgr=True, prefix="netG.",
                             ignore=lambda k: not k.startswith("netG."), tf_mode=True)
    if any(k.startswith("coarse_generator.") for k in state):
        # trained by daa233's port: symmetric padding, RGB, its sqrt(sum(w^2 + 1e-4)) patch normalisation
        return _map_official(state, model, "daa233", path, bgr=False, tf_mode=False, patch_norm="additive")
    raise CheckpointError(f"{path} is not a DeepFill v1 checkpoint (ours, or daa233's gen_*.pt / "
                          f"torch_model.p layout); its first keys are {list(state)[:3]}")


def read_daa233_tf(path) -> dict:
    """daa233's ``torch_model.p`` (the TF v1 release in its trainer's layout) as ``{"G": its tensors}``, read
    without running pickled code; the hub keeps it as a safetensors bundle."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read without running its pickled code ({type(exc).__name__}); "
                              f"the zoo does not run code from weight files") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not daa233's torch_model.p state dict")
    return {"G": {k: v for k, v in obj.items() if torch.is_tensor(v)}}


# ---------------------------------------------------------------------------------------------------------
# Export (zoo/export.py): the TorchScript-based ONNX exporter traces the static-graph contextual attention at
# any size (the dynamo exporter takes minutes and gains nothing here).
# Weights converted from the TF release run in TF mode, whose SAME padding and align_corners resizes are computed
# from the input size: those are exported at one size.
EXPORT = dict(exporter="torchscript", dynamic=lambda model: not model.tf_mode,
              fixed_reason="TF-mode weights (the converted TF release) pad and resize by the input size",
              weights_license="official TF weights CC BY-NC 4.0 (JiahuiYu); PyTorch ports: see their repositories")


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
    discriminator_kwargs=dict(in_channels=3, cnum=64, global_mults=(1, 2, 4, 4), local_mults=(1, 2, 4, 8),
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

# Released weights. nipponjo's README: Google Drive ids of the official TF v2 weights converted to his
# networks_tf.py, and of his fine-tunes for networks.py; daa233's README: his PyTorch-trained v1 and the TF v1
# release converted; mmagic's metafile.yml: URLs whose names end in the first 8 hex digits of the sha256.
# None of the Drive files has a published hash.
NIPPONJO = "https://github.com/nipponjo/deepfillv2-pytorch (README, Pretrained models)"
DAA233 = "https://github.com/daa233/generative-inpainting-pytorch (README)"
MMAGIC = "https://download.openmmlab.com/mmediting/inpainting/"
OFFICIAL_NC = CC_BY_NC + ", the official DeepFill weights (JiahuiYu/generative_inpainting)"
MMAGIC_LICENSE = "Apache-2.0 (the mmagic repository; no separate licence is stated for the weights)"
MMAGIC_NOTE = ("mmagic's own re-training with reflect padding (v2 also a 5-channel stage-2 input): our DeepFill has "
               "no such variant, so the file is listed and verifiable but not loadable")
_V2 = dict(resolution=256, paper=PAPER_V2, origin=NIPPONJO)
_MMAGIC = dict(resolution=256, format="mmagic", loadable=False, hash_kind="sha256-prefix", license=MMAGIC_LICENSE,
               notes=MMAGIC_NOTE)
V2_WEIGHTS = weight_table(
    WeightEntry("places2", "states_tf_places2.pth", sources=(GDriveFile("1tvdQRmkphJK7FYveNAKSMWC6K09hJoyt"),),
                license=OFFICIAL_NC, data="Places2", format="nipponjo_tf",
                notes="the official v2.0.0 TF release converted by nipponjo (BGR, TF padding)", **_V2),
    WeightEntry("celebahq", "states_tf_celebahq.pth", sources=(GDriveFile("1fTQVSKWwWcKYnmeemxKWImhVtFQpESmm"),),
                license=OFFICIAL_NC, data="CelebA-HQ", format="nipponjo_tf",
                notes="the official v2.0.0 TF release converted by nipponjo (BGR, TF padding)", **_V2),
    WeightEntry("places2_ft", "states_pt_places2.pth", sources=(GDriveFile("1L63oBNVgz7xSb_3hGbUdkYW1IuRgMkCa"),),
                license=OFFICIAL_NC + "; fine-tuned by nipponjo (no licence file)", data="Places2",
                format="nipponjo_pt", notes="nipponjo's fine-tune for networks.py (RGB, PyTorch padding)", **_V2),
    WeightEntry("celebahq_ft", "states_pt_celebahq.pth",
                sources=(GDriveFile("17oJ1dJ9O3hkl2pnl8l2PtNVf2WhSDtB7"),),
                license=OFFICIAL_NC + "; fine-tuned by nipponjo (no licence file)", data="CelebA-HQ",
                format="nipponjo_pt", notes="nipponjo's fine-tune for networks.py (RGB, PyTorch padding)", **_V2),
    WeightEntry("places_mmagic", "deepfillv2_256x256_8x2_places_20200619-10d15793.pth",
                sources=(URLFile(MMAGIC + "deepfillv2/deepfillv2_256x256_8x2_places_20200619-10d15793.pth"),),
                hash="10d15793", data="Places365-Challenge", paper=PAPER_V2,
                origin="https://github.com/open-mmlab/mmagic/blob/main/configs/deepfillv2/metafile.yml", **_MMAGIC),
    WeightEntry("celebahq_mmagic", "deepfillv2_256x256_8x2_celeba_20200619-c96e5f12.pth",
                sources=(URLFile(MMAGIC + "deepfillv2/deepfillv2_256x256_8x2_celeba_20200619-c96e5f12.pth"),),
                hash="c96e5f12", data="CelebA-HQ", paper=PAPER_V2,
                origin="https://github.com/open-mmlab/mmagic/blob/main/configs/deepfillv2/metafile.yml", **_MMAGIC),
)
V1_WEIGHTS = weight_table(
    WeightEntry("imagenet", "gen_00430000.pt", sources=(GDriveFile("1qbfA5BP9yzdTFFmiOTvYARUYgW1zwBBK"),),
                license="MIT (daa233's repository; trained by daa233)", data="ImageNet", resolution=256,
                format="daa233_gen", origin=DAA233, paper=PAPER_V1,
                notes="trained in PyTorch for 430k iterations; the README links the id as 'open?id=' (if it is a "
                "folder, download gen_00430000.pt from it by hand)"),
    WeightEntry("imagenet_tf", "torch_model.p", sources=(GDriveFile("1vz2Qp12_iwOiuvLWspLHrC1UIuhSLojx"),),
                license=OFFICIAL_NC, data="ImageNet", resolution=256, format="daa233_tf", reader=read_daa233_tf,
                origin=DAA233, paper=PAPER_V1, notes="the official TF v1 ImageNet release converted by daa233 "
                "(BGR, TF padding)"),
    WeightEntry("places_mmagic", "deepfillv1_256x256_8x2_places_20200619-c00a0e21.pth",
                sources=(URLFile(MMAGIC + "deepfillv1/deepfillv1_256x256_8x2_places_20200619-c00a0e21.pth"),),
                hash="c00a0e21", data="Places365-Challenge", paper=PAPER_V1,
                origin="https://github.com/open-mmlab/mmagic/blob/main/configs/deepfillv1/metafile.yml", **_MMAGIC),
    WeightEntry("celebahq_mmagic", "deepfillv1_256x256_4x4_celeba_20200619-dd51a855.pth",
                sources=(URLFile(MMAGIC + "deepfillv1/deepfillv1_256x256_4x4_celeba_20200619-dd51a855.pth"),),
                hash="dd51a855", data="CelebA-HQ", paper=PAPER_V1,
                origin="https://github.com/open-mmlab/mmagic/blob/main/configs/deepfillv1/metafile.yml", **_MMAGIC),
)


@register_model(
    "deepfill_v2",
    num_params=4_052_478,
    recipe=V2_RECIPE,
    native_size=256,
    size_multiple=8,
    num_stages=2,
    paper=PAPER_V2,
    width_arg="cnum",
    defaults=dict(cnum=48),
    tiny=dict(cnum=8),
    checkpoints=V2_WEIGHTS,
    convert_checkpoint=convert_deepfill_v2,
)
def deepfill_v2(**kwargs):
    return DeepFill(version=2, **kwargs)


@register_model(
    "deepfill_v1",
    num_params=3_601_542,
    recipe=V1_RECIPE,
    native_size=256,
    size_multiple=8,
    num_stages=2,
    paper=PAPER_V1,
    width_arg="cnum",
    defaults=dict(cnum=32),
    tiny=dict(cnum=8),
    checkpoints=V1_WEIGHTS,
    convert_checkpoint=convert_deepfill_v1,
)
def deepfill_v1(**kwargs):
    return DeepFill(version=1, **kwargs)
