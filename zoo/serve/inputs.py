"""Uploaded images, masks and sketches: decoded (whatever the client called them), size-checked, bounded.

The pixel limit is checked on the header, before any pixel is decompressed, so a small file that claims
a huge image (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import ZooError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a whole request
    max_side: int = 4096  # pixels, width and height each
    queue_size: int = 32  # jobs waiting for the device


class UploadError(ZooError):
    """A bad upload; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422):
        self.status = status
        super().__init__(message)


def decode(data: bytes, what: str, limits: Limits) -> Image.Image:
    """The decoded image in ``data`` (EXIF orientation applied, as browsers show it), or ``UploadError``."""
    if not data:
        raise UploadError(f"{what} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width > limits.max_side or height > limits.max_side:
                raise UploadError(f"{what} is {width}x{height} pixels; this server takes at most "
                                  f"{limits.max_side}x{limits.max_side}", status=413)
            image.load()
            return ImageOps.exif_transpose(image)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{what} is too large to decode safely (decompression bomb?)", status=413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(f"{what} is not a readable image ({', '.join(FORMATS)}): {exc.__class__.__name__}",
                          status=415) from None


def read_rgb(data: bytes, what: str, limits: Limits) -> np.ndarray:
    """H x W x 3 uint8 RGB (grey and RGBA converted, as ``zoo inpaint`` does)."""
    return np.asarray(decode(data, what, limits).convert("RGB"))


def read_binary(data: bytes, what: str, limits: Limits, white_is_one: bool = True) -> np.ndarray:
    """H x W float32 in {0, 1}: grey levels above 127 are 1 when ``white_is_one`` (as ``read_mask_file``)."""
    grey = np.asarray(decode(data, what, limits).convert("L"))
    return ((grey > 127) if white_is_one else (grey <= 127)).astype(np.float32)
