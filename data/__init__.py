"""Image sources, split manifests, seeded mask generators and the datasets the trainer reads."""

from data.datasets import InpaintingStream, fixed_batch, to_tensor
from data.images import default_images, list_images, load_image, read_split, resolve_source, write_split
from data.masks import MASK_GENERATORS, make_mask, read_mask_file, register_mask

__all__ = [
    "MASK_GENERATORS",
    "InpaintingStream",
    "default_images",
    "fixed_batch",
    "list_images",
    "load_image",
    "make_mask",
    "read_mask_file",
    "read_split",
    "register_mask",
    "resolve_source",
    "to_tensor",
    "write_split",
]
