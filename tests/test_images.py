"""load_image: every mode Pillow reads becomes upright 8-bit RGB with the right values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data.images import load_image


def grey(img) -> np.ndarray:
    """The loaded image, checked to be grey (R = G = B), as H x W."""
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    return img[..., 0]


def test_16_bit_grey_png_is_scaled_not_saturated(tmp_path):
    values = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert grey(load_image(tmp_path / "g16.png")).tolist() == np.round(values / 257).astype(int).tolist()


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16_bit_byte_orders(tmp_path, mode):
    values = np.array([[0, 514, 65535]], dtype=">u2" if mode == "I;16B" else "<u2")
    img = Image.frombytes(mode, (3, 1), values.tobytes())
    img.save(tmp_path / "g.tif")
    assert grey(load_image(tmp_path / "g.tif")).tolist() == [[0, 2, 255]]


def test_32_bit_integer_tiff_is_read_as_16_bit_range(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 70000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert grey(load_image(tmp_path / "i.tif")).tolist() == [[0, 100, 255, 255]]


def test_float_tiff_in_unit_range_and_in_byte_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f01.tif")
    assert grey(load_image(tmp_path / "f01.tif")).tolist() == [[0, 128, 255]]
    Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32)).save(tmp_path / "f255.tif")
    assert grey(load_image(tmp_path / "f255.tif")).tolist() == [[0, 100, 255]]


def test_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").tolist() == [[[255, 0, 0], [0, 0, 255]]]
    img.save(tmp_path / "pt.png", transparency=1)  # index 1 fully transparent: shows the white page
    assert Image.open(tmp_path / "pt.png").mode == "P"
    assert load_image(tmp_path / "pt.png").tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_rgba_is_composited_onto_white(tmp_path):
    img = Image.new("RGBA", (3, 1))
    img.putdata([(200, 100, 0, 255), (200, 100, 0, 0), (200, 100, 0, 128)])
    img.save(tmp_path / "a.png")
    expected = [[200, 100, 0], [255, 255, 255], [round(200 * 128 / 255 + 255 * 127 / 255),
                                                 round(100 * 128 / 255 + 255 * 127 / 255), round(255 * 127 / 255)]]
    assert load_image(tmp_path / "a.png").tolist() == [expected]


def test_grey_with_alpha(tmp_path):
    img = Image.new("LA", (2, 1))
    img.putdata([(40, 255), (40, 0)])
    img.save(tmp_path / "la.png")
    assert grey(load_image(tmp_path / "la.png")).tolist() == [[40, 255]]


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (1, 1), (10, 20, 30, 40))
    img.save(tmp_path / "c.tif")
    c, m, y, k = 10, 20, 30, 40
    expected = [round((255 - v) * (255 - k) / 255) for v in (c, m, y)]
    assert np.abs(load_image(tmp_path / "c.tif")[0, 0].astype(int) - expected).max() <= 1


def test_grey_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8)).save(tmp_path / "l.png")
    assert grey(load_image(tmp_path / "l.png")).tolist() == [[0, 77, 255]]
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    assert grey(load_image(tmp_path / "b.png")).tolist() == [[255, 0]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red at the stored top-left
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.png", exif=exif)
    loaded = load_image(tmp_path / "o.png")
    assert loaded.shape == (3, 2, 3)  # upright: portrait
    assert loaded[0, 1].tolist() == [255, 0, 0]  # the stored top-left shows at the top-right
    assert loaded.sum() == 255


def test_rgb_and_ycbcr_jpeg(tmp_path):
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "rgb.png")[3, 3].tolist() == [10, 200, 30]
    Image.new("RGB", (8, 8), (10, 200, 30)).convert("YCbCr").save(tmp_path / "y.jpg", quality=100)
    assert np.abs(load_image(tmp_path / "y.jpg")[3, 3].astype(int) - [10, 200, 30]).max() <= 3


def test_animation_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (2, 2), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "a.gif")[0, 0].tolist() == [255, 0, 0]
