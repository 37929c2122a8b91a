"""Evaluation mask protocols: the generators, hole-ratio buckets, and hashed, reproducible mask sets."""

import json

import cv2
import numpy as np
import pytest

from data.mask_sets import (
    DEFAULT_EDGES,
    LIU_EDGES,
    PROTOCOLS,
    bucket_index,
    check_reference,
    folder_set,
    load_mask_set,
    protocol_set,
    stored_set,
    write_mask_set,
)
from data.masks import make_mask, touches_border
from zoo.errors import MaskError, ZooError

GENERATORS = ["liu_irregular", "lama_thin", "lama_medium", "lama_thick", "mat_small", "mat_large"]


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (96, 128)])
def test_generators_are_seeded_binary_masks(name, shape):
    a = make_mask(name, np.random.default_rng([3, 1]), *shape)
    b = make_mask(name, np.random.default_rng([3, 1]), *shape)
    c = make_mask(name, np.random.default_rng([3, 2]), *shape)
    assert a.shape == shape and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert 0 < a.mean() < 1
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [64, 256])
def test_liu_masks_land_in_their_bucket_and_border_class(size):
    masks = protocol_set("liu", size, 12, progress=False)
    for k in range(12):
        mask = masks[k]
        assert bucket_index(int(mask.sum()), mask.size, LIU_EDGES) == k % 6, k
        assert touches_border(mask) == ((k // 6) % 2 == 0), k


def test_lama_masks_respect_the_area_cap_and_mat_small_is_smaller_than_large():
    for name in ("lama_thin", "lama_medium", "lama_thick"):
        ratios = [make_mask(name, np.random.default_rng(k), 256, 256).mean() for k in range(30)]
        assert 0 < min(ratios) and max(ratios) <= 0.5, name
    small = np.mean([make_mask("mat_small", np.random.default_rng(k), 256, 256).mean() for k in range(40)])
    large = np.mean([make_mask("mat_large", np.random.default_rng(k), 256, 256).mean() for k in range(40)])
    assert small < large - 0.1  # measured means about 0.20 and 0.42


def test_lama_thin_strokes_are_thinner_than_thick_ones():
    """An opening with a 15 px square erases most of a thin mask (5-14 px strokes at 256; what survives is
    where strokes cross) and almost nothing of a thick one. Measured: 0.41 and 0.998 kept."""
    kernel = np.ones((15, 15), np.uint8)

    def kept(name):
        masks = [make_mask(name, np.random.default_rng(k), 256, 256).astype(np.uint8) for k in range(10)]
        return np.mean([cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel).sum() / m.sum() for m in masks])

    assert kept("lama_thin") < 0.6
    assert kept("lama_thick") > 0.9


def test_bucket_boundaries():
    # Liu buckets on 100 pixels: [1 %, 10 %), ..., [50 %, 60 %); outside -> None.
    assert bucket_index(0, 100, LIU_EDGES) is None
    assert bucket_index(1, 100, LIU_EDGES) == 0
    assert bucket_index(9, 100, LIU_EDGES) == 0
    assert bucket_index(10, 100, LIU_EDGES) == 1  # exactly on an edge: the upper bucket
    assert bucket_index(59, 100, LIU_EDGES) == 5
    assert bucket_index(60, 100, LIU_EDGES) is None
    # default edges cover everything, the last bucket includes 100 %
    assert bucket_index(0, 100, DEFAULT_EDGES) == 0
    assert bucket_index(60, 100, DEFAULT_EDGES) == 6
    assert bucket_index(100, 100, DEFAULT_EDGES) == 6
    # 64 x 64: 10 % is 409.6 pixels, so 409 holes are still below it and 410 are not
    assert bucket_index(409, 4096, LIU_EDGES) == 0
    assert bucket_index(410, 4096, LIU_EDGES) == 1


def test_mask_sets_regenerate_byte_identical_and_prefixes_agree():
    a = protocol_set("lama_medium", 64, 10, seed=5, progress=False)
    b = protocol_set("lama_medium", 64, 10, seed=5, progress=False)
    short = protocol_set("lama_medium", 64, 4, seed=5, progress=False)
    other = protocol_set("lama_medium", 64, 10, seed=6, progress=False)
    assert a.sha256 == b.sha256 and a.entries == b.entries
    assert short.entries == a.entries[:4]  # a shorter evaluation uses exactly the first masks
    assert other.sha256 != a.sha256
    assert all(np.array_equal(a[k], b[k]) for k in range(10))
    assert a.manifest()["sha256"] == a.sha256 and a.manifest()["count"] == 10


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_protocol_sets_match_the_recorded_reference_hashes(protocol):
    """The first masks of every protocol at 256 equal the ones recorded in data/manifests/mask_sets.json."""
    assert check_reference(protocol_set(protocol, 256, 6, progress=False)) == "matches"


def test_stored_set_round_trip_and_tampering(tmp_path):
    mask_set = protocol_set("liu", 64, 12, progress=False)
    write_mask_set(mask_set, tmp_path / "set")
    back = load_mask_set(tmp_path / "set", 64)
    assert back.sha256 == mask_set.sha256
    assert back.buckets == mask_set.buckets
    assert all(np.array_equal(back[k], mask_set[k]) for k in range(12))
    with pytest.raises(ZooError, match="is 64x64"):
        load_mask_set(tmp_path / "set", 128)
    # a changed file is caught when it is read; an edited manifest when it is loaded
    cv2.imwrite(str(tmp_path / "set" / "00003.png"), np.zeros((64, 64), np.uint8))
    with pytest.raises(MaskError, match="mask 3 .* changed"):
        stored_set(tmp_path / "set")[3]
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    manifest["masks"][0]["sha256"] = "0" * 64
    (tmp_path / "set" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooError, match="do not add up"):
        stored_set(tmp_path / "set")


def test_folder_of_user_masks(tmp_path):
    for i, (h0, h1) in enumerate([(0, 8), (0, 32), (0, 64)]):  # black = hole: 12.5 %, 50 %, 100 % of rows
        img = np.full((64, 64), 255, np.uint8)
        img[h0:h1] = 0
        cv2.imwrite(str(tmp_path / f"m{i}.png"), img)
    masks = folder_set(tmp_path, 64, hole_value="black")
    assert len(masks) == 3
    assert masks.ratios.tolist() == [0.125, 0.5, 1.0]
    assert masks.buckets == ["10-20%", "50-60%", "60-100%"]
    assert masks[1].sum() == 64 * 32
    cv2.imwrite(str(tmp_path / "m3.png"), np.full((64, 64), 255, np.uint8))
    with pytest.raises(MaskError, match="m3.png marks no hole"):
        folder_set(tmp_path, 64, hole_value="black")
    with pytest.raises(ZooError, match="neither a protocol"):
        load_mask_set(tmp_path / "missing", 64)
