"""Building blocks shared by more than one generator family."""

from zoo.layers.contextual_attention import ContextualAttention
from zoo.layers.gated_conv import (
    ConvStack,
    GatedConv2d,
    UpConv2d,
    resize_nearest_aligned,
    tf_same_padding,
    upsample_nearest,
)
from zoo.layers.stylegan2 import (
    Conv2dLayer,
    FullyConnectedLayer,
    ModulatedConv2d,
    bias_act,
    conv2d_resample,
    fir_filter,
    normalize_2nd_moment,
    upfirdn2d,
    upsample2d,
)

__all__ = [
    "ContextualAttention",
    "ConvStack",
    "Conv2dLayer",
    "FullyConnectedLayer",
    "ModulatedConv2d",
    "bias_act",
    "conv2d_resample",
    "fir_filter",
    "normalize_2nd_moment",
    "upfirdn2d",
    "upsample2d",
    "GatedConv2d",
    "UpConv2d",
    "resize_nearest_aligned",
    "tf_same_padding",
    "upsample_nearest",
]
