"""Building blocks shared by more than one generator family."""

from zoo.layers.contextual_attention import ContextualAttention
from zoo.layers.gated_conv import GatedConv2d, UpConv2d, resize_nearest_aligned, tf_same_padding, upsample_nearest

__all__ = [
    "ContextualAttention",
    "GatedConv2d",
    "UpConv2d",
    "resize_nearest_aligned",
    "tf_same_padding",
    "upsample_nearest",
]
